/**
 * Every `kd` command line that the Makefile, pipelines/ (zx demo, Slurm, Kubernetes) and README's
 * shell blocks run goes through the CLI's parser (strict options), so no target can name a flag
 * the CLI does not take. The stages do not run (parse-only).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { kdCli, ParsedCommandLine } from '../pipelines/cli.js';

const root = join(import.meta.dirname, '..');
const read = (p: string) => readFileSync(join(root, p), 'utf8');

/** Splits a shell command into words (single and double quotes; $VAR and ${VAR} become VAR's name). */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  const re = /'([^']*)'|"([^"]*)"|(\S+)/g;
  for (const m of line.matchAll(re)) words.push((m[1] ?? m[2] ?? m[3]).replace(/\$\{?(\w+)\}?/g, 'var_$1'));
  return words;
}

interface CommandLine { where: string; args: string[] }

function makefileLines(): CommandLine[] {
  return read('Makefile').split('\n').flatMap((line, i) => {
    const m = /^\t\$\(KD\) (.*)$/.exec(line);
    return m ? [{ where: `Makefile:${i + 1}`, args: shellWords(m[1]) }] : [];
  });
}

function zxLines(): CommandLine[] {
  return readdirSync(join(root, 'pipelines')).filter((f) => f.endsWith('.ts') && f !== 'kd.ts' && f !== 'cli.ts').flatMap((f) =>
    read(`pipelines/${f}`).split('\n').flatMap((line, i) =>
      [...line.matchAll(/\$\{kd\} ([^`]*)`/g)].map((m) => ({ where: `pipelines/${f}:${i + 1}`, args: shellWords(m[1]) }))));
}

function slurmLines(): CommandLine[] {
  const dir = 'pipelines/slurm';
  return readdirSync(join(root, dir)).flatMap((f) => read(`${dir}/${f}`).split('\n').flatMap((line, i) => {
    const m = /\$KD (.*)$/.exec(line);
    if (!m || line.trimStart().startsWith('KD=')) return [];
    const inWrap = /--wrap="[^"]*\$KD/.test(line); // `--wrap="cd … && $KD merge …"`: the command ends at the closing quote
    return [{ where: `${dir}/${f}:${i + 1}`, args: shellWords(inWrap ? m[1].replace(/"\s*$/, '') : m[1]) }];
  }));
}

function k8sLines(): CommandLine[] {
  const dir = 'pipelines/k8s';
  return readdirSync(join(root, dir)).flatMap((f) => {
    const doc = parseYaml(read(`${dir}/${f}`)) as { spec: { template: { spec: { containers: { command: string[]; args?: string[] }[] } } } };
    return doc.spec.template.spec.containers
      .filter((c) => c.command[1] === 'pipelines/kd.js')
      .map((c) => ({ where: `${dir}/${f}`, args: [...c.command.slice(2), ...(c.args ?? [])] }));
  });
}

function readmeLines(): CommandLine[] {
  const blocks = [...read('README.md').matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
  return blocks.flatMap((b) => b.split('\n').filter((l) => /^kd /.test(l)).map((l) => ({ where: 'README.md', args: shellWords(l.replace(/#.*$/, '').slice(3)) })));
}

/** Parses `args` with the real CLI, stopping before the handler: returns the CLI's error, or undefined. */
async function parseError(args: string[]): Promise<string | undefined> {
  try {
    await (await kdCli(args, true)).parseAsync();
    return 'the handler would have run without the parse-only stop';
  } catch (e) {
    return e instanceof ParsedCommandLine ? undefined : (e as Error).message;
  }
}

describe('every kd command line written in the repository parses', () => {
  const lines = [...makefileLines(), ...zxLines(), ...slurmLines(), ...k8sLines(), ...readmeLines()];

  it('finds the command lines of each source', () => {
    const count = (prefix: string) => lines.filter((l) => l.where.startsWith(prefix)).length;
    expect(count('Makefile')).toBeGreaterThanOrEqual(10);
    expect(count('pipelines/demo.ts')).toBe(6);
    expect(count('pipelines/slurm')).toBe(2);
    expect(count('pipelines/k8s')).toBe(2);
    expect(count('README.md')).toBeGreaterThanOrEqual(3);
    expect(lines.filter((l) => l.where.startsWith('Makefile') && l.args.includes('--overwrite')).map((l) => l.args[0])).toContain('train');
  });

  it.each(lines.map((l) => [`${l.where}: kd ${l.args.join(' ')}`, l.args] as const))('%s', async (_name, args) => {
    expect(await parseError([...args])).toBeUndefined();
  });

  it('refuses a flag the CLI does not take', async () => {
    expect(await parseError(['train', '--no-such-flag'])).toBe('--no-such-flag is not a kd train option (see kd train --help)');
    expect(await parseError(['teacher', 'export', '--checkpoint', 'x', '--out', 'y', '--bogus', '1'])).toBe('--bogus is not a kd teacher export option (see kd teacher export --help)');
  });
});
