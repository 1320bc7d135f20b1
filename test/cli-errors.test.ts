/**
 * One-line errors of the kd command line that a fresh user meets first: bad numbers, misplaced
 * flags, --config given a directory, flag conflicts. Each is checked before any input is read, so
 * the inputs named here need not exist (were the check late, "not found" would be the error).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kdCli } from '../pipelines/cli.js';
import { unknownOptionsMessage } from '../lib/cli/unknown-options.js';
import { resolveCascadeConfig } from '../stages/cascade.js';

const dir = mkdtempSync(join(tmpdir(), 'kd-cli-errors-'));
const missing = (name: string) => join(dir, 'missing', name);

/** The error `kd <args>` stops with, run in process up to its stage's first check. */
async function kdError(args: string[]): Promise<string> {
  try { await (await kdCli(args)).parseAsync(); } catch (e) { return (e as Error).message; }
  throw new Error(`kd ${args.join(' ')} did not fail`);
}

describe('kd cascade: numeric flags are validated up front', () => {
  const models = ['cascade', '--student', missing('s.onnx'), '--teacher', missing('t.onnx')];

  it.each([
    [['--max-windows', 'abc'], '--max-windows: not a number'],
    [['--max-windows', '-3'], `--max-windows = -3 must be an integer in [0, ${Number.MAX_SAFE_INTEGER}]`],
    [['--max-windows', '1.5'], `--max-windows = 1.5 must be an integer in [0, ${Number.MAX_SAFE_INTEGER}]`],
    [['--batch-size', 'abc'], '--batch-size: not a number'],
    [['--batch-size', '0'], '--batch-size = 0 must be an integer in [1, 4096]'],
  ])('%j → one line naming the flag', async (flags, message) => {
    expect(await kdError([...models, ...flags])).toBe(message);
  });

  it('student and teacher are required, naming the flag', () => {
    expect(() => resolveCascadeConfig({ teacher: 't.onnx' })).toThrow(new Error("cascade config: student is required (--student, the student's .onnx)"));
    expect(() => resolveCascadeConfig({ student: 's.onnx' })).toThrow(new Error("cascade config: teacher is required (--teacher, the teacher's .onnx)"));
  });

  it('the defaults hold when nothing is given', () => {
    const cfg = resolveCascadeConfig({ student: 's.onnx', teacher: 't.onnx' });
    expect([cfg.prep, cfg.out, cfg.confidence, cfg.max_windows, cfg.batch_size, cfg.device, cfg.overwrite]).toEqual(['runs/prep', 'runs/cascade', ['max_prob', 'entropy'], 0, 8, 'auto', false]);
  });
});

describe('--config given a directory', () => {
  it.each(['train', 'precompute', 'eval', 'cascade', 'plan', 'prep'])('kd %s says it is a directory and a JSON file is expected', async (stage) => {
    expect(await kdError([stage, '--config', dir])).toBe(`${dir}: is a directory, expected a JSON config file (or .yaml/.yml), e.g. pipelines/configs/student.json`);
  });
});

describe('kd precompute: mode and flag conflicts are checked before the inputs load, naming the flag', () => {
  const inputs = ['precompute', '--teacher', missing('t.onnx'), '--prep', missing('prep'), '--out', missing('out')];

  it.each([
    [['--mode', 'sampled', '--k', '8'], "--k is for mode 'topk'; mode 'sampled' stores --samples draws per position"],
    [['--samples', '4'], "--samples is for mode 'sampled' (add --mode sampled, or drop it)"],
    [['--mode', 'topk', '--sampling-seed', '3'], "--sampling-seed is for mode 'sampled' (add --mode sampled, or drop it)"],
    [['--mode', 'sampled', '--sampling-temperature', '3'], '--sampling-temperature 3 must be one of temperatures [1,2,4] (its log_z weights the draws)'],
    [['--mode', 'sampled', '--temperatures', '2', '4'], '--temperatures [2,4] must include sampling_temperature 1 (its log_z weights the draws)'],
    [['--value-step', '0.0625'], "--value-step is for layout 'compact' (add --layout compact, or drop it)"],
    [['--hidden-dim', '64'], '--hidden-dim needs hidden_layers (--hidden-layers): it names or projects the stored hidden states'],
    [['--hidden-outputs', 'h.2'], '--hidden-outputs needs hidden_layers (--hidden-layers): it names or projects the stored hidden states'],
  ])('%j', async (flags, message) => {
    expect(await kdError([...inputs, ...flags])).toBe(message);
  });

  it('a conflict set in the config file names the file and key', async () => {
    const file = join(dir, 'sampled.json');
    writeFileSync(file, JSON.stringify({ mode: 'sampled', k: 8 }));
    expect(await kdError([...inputs, '--config', file])).toBe(`${file}: k is for mode 'topk'; mode 'sampled' stores --samples draws per position`);
    writeFileSync(file, JSON.stringify({ mode: 'sampled', sampling_temperature: 2 }));
    expect(await kdError([...inputs, '--config', file, '--temperatures', '1', '4'])).toBe('--temperatures [1,4] must include sampling_temperature 2 (its log_z weights the draws)');
    expect(await kdError([...inputs, '--config', file, '--sampling-temperature', '3'])).toBe('--sampling-temperature 3 must be one of temperatures [1,2,4] (its log_z weights the draws)');
  });

  it('without a conflict the inputs are read (the next error is the missing teacher)', async () => {
    expect(await kdError([...inputs, '--mode', 'sampled', '--samples', '4'])).toBe(`${missing('prep')}/windows.json: not found (not a prep output directory?)`);
  });

  it('a file given as --prep is named as such, not as <file>/windows.json', async () => {
    const file = join(dir, 'windows.json');
    writeFileSync(file, '{}');
    expect(await kdError(['precompute', '--prep', file, '--out', join(dir, 'out-file-prep')])).toBe(`${file}: is a file, expected a prep output directory (holding windows.json)`);
  });
});

describe('kd train --ensemble: conflicts name the flag, before any dataset is opened', () => {
  const train = ['train', '--data', missing('logits'), '--prep', missing('prep'), '--out', missing('out')];

  it.each([
    [['--ensemble', 'b:1.5'], "--ensemble 'b:1.5' must be dir:weight pairs with weights in (0, 1), e.g. runs/logits-b:0.5"],
    [['--ensemble', 'b:0.6,c:0.5'], '--ensemble weights 0.6 + 0.5 leave no weight for --data (they must sum to < 1)'],
    [['--ensemble', 'b:0.5', '--topk-mode', 'renormalize'], "--ensemble needs topk_mode 'tail' (each teacher's tail mass comes from its log_z), got 'renormalize' from --topk-mode"],
  ])('%j', async (flags, message) => {
    expect(await kdError([...train, ...flags])).toBe(message);
  });

  it('from a config file: the file and key', async () => {
    const file = join(dir, 'ensemble.json');
    writeFileSync(file, JSON.stringify({ ensemble: 'b:0.5', topk_mode: 'renormalize' }));
    expect(await kdError([...train, '--config', file])).toBe(`${file}: ensemble needs topk_mode 'tail' (each teacher's tail mass comes from its log_z), got 'renormalize' from ${file}`);
    expect(await kdError([...train, '--config', file, '--topk-mode', 'tail', '--ensemble', 'b'])).toBe("--ensemble 'b' must be dir:weight pairs with weights in (0, 1), e.g. runs/logits-b:0.5");
  });

  it('temperature_min above temperature blames the flag that set one of them', async () => {
    const file = join(dir, 'tmin.json');
    writeFileSync(file, JSON.stringify({ temperature_min: 3, temperature_schedule: 'cosine' }));
    const why = "(the 'cosine' schedule decays from temperature to temperature_min)";
    expect(await kdError([...train, '--config', file, '--temperature', '2'])).toBe(`--temperature = 2 is below temperature_min = 3 ${why}`);
    expect(await kdError([...train, '--config', file, '--temperature', '2', '--temperature-min', '4'])).toBe(`--temperature-min = 4 is above temperature = 2 ${why}`);
    writeFileSync(file, JSON.stringify({ temperature: 2, temperature_min: 3, temperature_schedule: 'cosine' }));
    expect(await kdError([...train, '--config', file])).toBe(`${file}: temperature_min = 3 is above temperature = 2 ${why}`);
  });
});

describe('kd cascade --student <directory>: asks for the .onnx file inside', () => {
  const model = (...parts: string[]) => { const p = join(dir, ...parts); mkdirSync(dirname(p), { recursive: true }); writeFileSync(p, 'onnx bytes'); return p; };
  const cascade = (student: string) => kdError(['cascade', '--student', student, '--teacher', missing('t.onnx'), '--out', missing('cascade')]);

  it('one .onnx below it (kd export\'s layout): named as the flag to give', async () => {
    const file = model('export', 'onnx', 'model.onnx');
    expect(await cascade(join(dir, 'export'))).toBe(`${join(dir, 'export')}: is a directory; --student takes the student's .onnx file, e.g. --student ${file}`);
  });

  it('several: listed; none: says where kd export puts it', async () => {
    const [a, b] = [model('exports', 'fp32', 'onnx', 'model.onnx'), model('exports', 'int8', 'onnx', 'model.onnx')];
    expect(await cascade(join(dir, 'exports'))).toBe(`${join(dir, 'exports')}: is a directory; --student takes the student's .onnx file (it holds 2: ${a}, ${b})`);
    mkdirSync(join(dir, 'empty'));
    expect(await cascade(join(dir, 'empty'))).toBe(`${join(dir, 'empty')}: is a directory; --student takes the student's .onnx file (it holds none; kd export writes <out>/onnx/model.onnx)`);
  });

  it('a missing model names its flag', async () => {
    expect(await cascade(missing('s.onnx'))).toBe(`${missing('s.onnx')}: no such model (--student)`);
  });
});

describe('a flag the stage does not take: one line, the flag once (not its camelCase alias)', () => {
  const seqLen = '--seq-len is not a kd train option (the window length is set by kd prep --seq-len and read from the prep output)';

  it.each([
    [['train', '--seq-len', 'abc'], seqLen],
    [['train', '--seq-len', '128'], seqLen],
    [['train', '--seqLen', '128'], seqLen],
    [['train', '--batch-sise', '4'], '--batch-sise is not a kd train option (did you mean --batch-size?)'],
    [['train', '--seq-len', '128', '--foo', '1'], `${seqLen}; --foo is not a kd train option (see kd train --help)`],
    [['eval', '--seq-len', '128'], '--seq-len is not a kd eval option (the window length is set by kd prep --seq-len and read from the prep output)'],
    [['cascade', '--teachr', 't.onnx'], '--teachr is not a kd cascade option (did you mean --teacher?)'],
    [['train', '-x'], '-x is not a kd train option (see kd train --help)'],
  ])('kd %j', async (args, message) => {
    expect(await kdError(args)).toBe(message);
  });

  it('the stages that take --seq-len still do', async () => {
    expect(await kdError(['plan', '--model', missing('config.json'), '--seq-len', '128', '--batch-size', '1'])).toMatch(/config\.json: not found/);
  });

  it('other yargs messages pass through', () => {
    expect(unknownOptionsMessage('Missing required argument: dirs', 'merge', [])).toBeUndefined();
    expect(unknownOptionsMessage('Unknown argument: lrr', 'train', ['lr', 'help', 'version'])).toBe('--lrr is not a kd train option (did you mean --lr?)');
  });
});
