// A training save cut short (disk full in the middle of the new state) leaves the previous state
// resumable: `--resume` then gives the same final weights as a run that was never interrupted.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../lib/backend/select.js';
import { readSafetensors } from '../lib/model/safetensors.js';
import { resolveTrainConfig, TrainConfig } from '../lib/train/config.js';
import { makeLossFn } from '../lib/train/loss.js';
import { train, TrainControl, TrainingInputs } from '../lib/train/trainer.js';
import { injectWrite } from '../lib/util/fs.js';
import { fakeTokenizer, readMetrics, STORED_TEMPERATURES, syntheticData } from './synthetic.js';

const V = 40, L = 8;
const root = mkdtempSync(join(tmpdir(), 'kd-save-'));
const tokenizer = fakeTokenizer(join(root, 'tok'));
const trainData = syntheticData(24, L, V, 6, 1), validation = syntheticData(8, L, V, 6, 2, false);

beforeAll(async () => { await initBackend('wasm'); });
afterEach(() => injectWrite(undefined));

function inputs(cfg: TrainConfig): TrainingInputs {
  return { train: trainData, validation, tokenizer, realVocab: V, lossFn: makeLossFn(cfg, V, STORED_TEMPERATURES), provenance: {} };
}
async function run(over: Record<string, unknown>, control?: TrainControl) {
  const cfg = resolveTrainConfig({ batch_size: 2, lr: 1e-2, warmup_steps: 2, eval_windows: 8, quiet: true, backend: 'wasm', alpha: 0, max_steps: 12, ...over });
  return train(cfg, inputs(cfg), control);
}
const losses = (out: string) => readMetrics(readFileSync(join(out, 'metrics.jsonl'), 'utf8')).filter((r) => 'loss' in r).map((r) => r.loss);
const bytes = (out: string) => readFileSync(join(out, 'model.safetensors'));

/** Fails every write with ENOSPC once `when()` holds (armed from step `step` on). */
function diskFullWhen(when: () => boolean): { arm: () => void } {
  let armed = false;
  injectWrite((fd, buf, off, len) => {
    if (armed && when()) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
    return writeSync(fd, buf, off, len);
  });
  return { arm: () => { armed = true; } };
}

const small = { model: { hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1 }, save_every: 5 };

describe('a save cut short', () => {
  let full: string;
  beforeAll(async () => {
    full = join(root, 'full');
    expect(await run({ ...small, out: full })).toMatchObject({ steps: 12 });
  });

  for (const [what, when] of [
    ['while the new optimizer moments are written', (out: string) => readdirSync(join(out, 'state')).some((f) => /^optimizer-.*\.tmp$/.test(f))],
    ['while the new trainer_state.json is written', (out: string) => existsSync(join(out, 'trainer_state.json.tmp'))],
  ] as const) {
    it(`${what}: the run fails naming the file, --resume continues from the previous state to the same weights`, async () => {
      const out = join(root, what.replace(/\W+/g, '-'));
      const disk = diskFullWhen(() => when(out));
      const cut = run({ ...small, out }, { onStep: (r) => { if (r.step === 10) disk.arm(); } });
      await expect(cut).rejects.toThrow(/^\/\S+: no space left on device$/);
      await expect(cut).rejects.toThrow(what.includes('optimizer') ? /\/state\/optimizer-00000010-\w+\.safetensors: / : /\/trainer_state\.json: /);
      injectWrite(undefined);
      expect(JSON.parse(readFileSync(join(out, 'trainer_state.json'), 'utf8')).step).toBe(5);
      const again = await run({ ...small, out, resume: true });
      expect(again).toMatchObject({ steps: 12, interrupted: false });
      expect(bytes(out).equals(bytes(full))).toBe(true);
      expect(losses(out)).toEqual(losses(full));
      expect(readdirSync(join(out, 'state')).length).toBe(2); // only the last state's two files
    });
  }
});

// A real full disk: the run's --out on a 1 MiB tmpfs. One state (weights S + AdamW moments 2S)
// plus out/best (S) fits; the next save (another 3S beside the old state) does not.
const mnt = join(root, 'small');
mkdirSync(mnt);
const mounted = (() => {
  try { execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt], { stdio: 'ignore' }); return true; } catch { return false; }
})();
afterAll(() => { if (mounted) execFileSync('umount', [mnt]); });

describe('kd train on a full disk', () => {
  const wide = { model: { hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 }, save_every: 4, eval_every: 4 };

  it.skipIf(!mounted)('fails in one line "<file>: no space left on device"; the previous state resumes to the same weights', async () => {
    const ref = join(root, 'wide-full');
    await run({ ...wide, out: ref });
    const S = readFileSync(join(ref, 'model.safetensors')).length;
    expect(4 * S).toBeLessThan(1 << 20); // one state and best/ fit ...
    expect(7 * S).toBeGreaterThan(1 << 20); // ... a second state beside them does not
    const out = join(mnt, 'run');
    await expect(run({ ...wide, out })).rejects.toThrow(new RegExp(`^${out}/\\S+: no space left on device$`));
    expect(JSON.parse(readFileSync(join(out, 'trainer_state.json'), 'utf8')).step).toBe(4);
    expect(readSafetensors(join(out, 'model.safetensors')).tensors.size).toBeGreaterThan(0); // not torn
    const moved = join(root, 'wide-moved'); // the user frees space: here, moves the run
    cpSync(out, moved, { recursive: true });
    expect(await run({ ...wide, out: moved, resume: true })).toMatchObject({ steps: 12 });
    expect(bytes(moved).equals(bytes(ref))).toBe(true);
    expect(losses(moved)).toEqual(losses(ref));
  });
});
