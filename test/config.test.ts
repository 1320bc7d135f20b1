import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { flagsToConfig, readConfigFile } from '../lib/cli/config.js';
import { resolveTrainConfig } from '../lib/train/config.js';

describe('config files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kd-cfg-'));
  it('reads JSON and YAML to the same config, flags override the file', () => {
    writeFileSync(join(dir, 'a.json'), '{"alpha": 0.5, "model": {"hidden_size": 64}}');
    writeFileSync(join(dir, 'a.yaml'), 'alpha: 0.5\nmodel:\n  hidden_size: 64\n');
    expect(readConfigFile(join(dir, 'a.yaml'))).toEqual(readConfigFile(join(dir, 'a.json')));
    const flags = flagsToConfig({ alpha: 0.9, 'max-steps': 7, maxSteps: 7 }, ['alpha', 'max_steps', 'lr']);
    const cfg = resolveTrainConfig({ ...readConfigFile(join(dir, 'a.yaml')), ...flags });
    expect([cfg.alpha, cfg.max_steps, cfg.model.hidden_size, cfg.lr]).toEqual([0.9, 7, 64, 3e-3]);
    expect(() => flagsToConfig({ lr: Number('fast') }, ['lr'])).toThrow('--lr: not a number'); // yargs gives NaN for '--lr fast'
    expect(() => resolveTrainConfig({ lr: NaN })).toThrow(/lr = NaN /);
  });
  it('one-line errors for a missing file and bad syntax', () => {
    expect(() => readConfigFile(join(dir, 'none.json'))).toThrow(`${join(dir, 'none.json')}: config file not found`);
    expect(() => readConfigFile(dir)).toThrow(new Error(`${dir}: is a directory, expected a JSON config file (or .yaml/.yml), e.g. pipelines/configs/student.json`));
    writeFileSync(join(dir, 'bad.json'), '{"alpha": ');
    expect(() => readConfigFile(join(dir, 'bad.json'))).toThrow(/bad.json: not a JSON object/);
    writeFileSync(join(dir, 'list.yml'), '- 1\n- 2\n');
    expect(() => readConfigFile(join(dir, 'list.yml'))).toThrow(/list.yml: not a YAML mapping/);
  });
});

describe('flags over files and refusals', () => {
  it('--model merges into the config file model instead of replacing it', async () => {
    const { mergeConfig } = await import('../lib/cli/config.js');
    const merged = mergeConfig({ alpha: 0.5, model: { hidden_size: 128, num_hidden_layers: 2 } }, { model: { hidden_size: 64 }, alpha: 0.9 });
    expect(Object.fromEntries(Object.entries(merged))).toEqual({ alpha: 0.9, model: { hidden_size: 64, num_hidden_layers: 2 } }); // entries: without the flag-origin tag
  });
});
