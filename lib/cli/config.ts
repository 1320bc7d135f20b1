import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';

/**
 * A range/type check for one config field: returns an error fragment ("must be …") or undefined.
 * A check of an object-valued field (e.g. `model`) may instead name the inner key at fault:
 * `{ key: 'hiden_size', problem: "unknown key 'hiden_size' (did you mean 'hidden_size'?)" }`.
 */
export type FieldCheck = (value: unknown) => string | InnerProblem | undefined;

/** A problem inside an object-valued field: the inner key and the whole message fragment. */
export interface InnerProblem { key: string; problem: string }

export const isInt = (lo: number, hi = Number.MAX_SAFE_INTEGER): FieldCheck => (v) =>
  Number.isInteger(v) && (v as number) >= lo && (v as number) <= hi ? undefined : `must be an integer in [${lo}, ${hi}]`;
export const isNum = (lo: number, hi: number, open = false): FieldCheck => (v) =>
  typeof v === 'number' && Number.isFinite(v) && (open ? v > lo && v < hi : v >= lo && v <= hi) ? undefined : `must be a number in ${open ? '(' : '['}${lo}, ${hi}${open ? ')' : ']'}`;
export const isOneOf = (...allowed: unknown[]): FieldCheck => (v) => (allowed.includes(v) ? undefined : `must be one of ${allowed.join(', ')}`);
export const isString: FieldCheck = (v) => (typeof v === 'string' && v.length > 0 ? undefined : 'must be a non-empty string');
export const isBool: FieldCheck = (v) => (typeof v === 'boolean' ? undefined : 'must be true or false');
export const optional = (check: FieldCheck): FieldCheck => (v) => (v === undefined || v === null ? undefined : check(v));

/**
 * Which keys of a config object were set by command-line flags: key → the flag (`--lr`) and, for an
 * object value such as `--model '{…}'`, the inner keys the flag set. Carried by the objects
 * `flagsToConfig` and `mergeConfig` return under a symbol, so it survives `{ ...file, ...flags }`
 * (object spread copies enumerable symbol properties) and stays out of Object.keys / JSON.
 */
export interface FlagOrigin { flag: string; innerKeys?: string[] }
const FLAG_ORIGIN = Symbol('kd.flagOrigin');
type WithOrigin = Record<string, unknown> & { [FLAG_ORIGIN]?: Record<string, FlagOrigin> };

/** The flag origins carried by a config object (empty when every value came from a file). */
export function flagOrigins(partial: Record<string, unknown>): Record<string, FlagOrigin> {
  return (partial as WithOrigin)[FLAG_ORIGIN] ?? {};
}

/**
 * The head of an error about `key`: its flag (`--sampling-temperature`) when `partial` carries a
 * flag origin for it, else `<source>: <key>` (the config file, or "precompute config" for a call).
 */
export function blame(partial: Record<string, unknown>, key: string, source: string): string {
  return flagOrigins(partial)[key]?.flag ?? `${source}: ${key}`;
}

function tagOrigins<T extends Record<string, unknown>>(obj: T, origins: Record<string, FlagOrigin>): T {
  Object.defineProperty(obj, FLAG_ORIGIN, { value: origins, enumerable: true, configurable: true, writable: true });
  return obj;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown): string => (Number.isNaN(v) ? 'NaN' : JSON.stringify(v));

/**
 * Merges `partial` over `defaults` and validates every field. An object-valued default (e.g. the
 * student's `model`) is merged key by key, so `{ model: { hidden_size: 64 } }` changes one field of
 * the default model, as it does over a config file's model.
 * Errors are one line and blame where the value came from: the flag when `partial` carries a flag
 * origin for the key (`--lr = -0.01 must be …`), else `source` (`student.json: lr = -0.01 must be …`).
 * @throws Error on an unknown key (with the nearest valid name) or a failed check.
 */
export function resolveConfig<T extends object>(defaults: T, checks: Record<keyof T, FieldCheck>, partial: Record<string, unknown>, source: string): T {
  const keys = Object.keys(checks);
  for (const key of Object.keys(partial)) {
    if (!keys.includes(key)) throw new Error(`${source}: ${unknownKey(key, keys)}`);
  }
  const defined = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined));
  const cfg = { ...defaults } as Record<string, unknown>;
  for (const [key, value] of Object.entries(defined)) {
    cfg[key] = isObject(value) && isObject(cfg[key]) ? { ...cfg[key], ...value } : value;
  }
  const origins = flagOrigins(partial);
  for (const key of keys) {
    const problem = checks[key as keyof T](cfg[key]);
    if (problem === undefined) continue;
    const origin = origins[key];
    if (typeof problem === 'string') {
      throw new Error(`${origin ? origin.flag : `${source}: ${key}`} = ${show(cfg[key])} ${problem}`);
    }
    const byFlag = origin !== undefined && (origin.innerKeys === undefined || origin.innerKeys.includes(problem.key));
    throw new Error(`${byFlag ? origin.flag : `${source}: ${key}`}: ${problem.problem}`);
  }
  return cfg as T;
}

/** "unknown key 'x' (did you mean 'y'?)" when a valid key is within a few edits, else the valid list. */
export function unknownKey(key: string, valid: readonly string[]): string {
  const near = nearest(key, valid);
  return near ? `unknown key '${key}' (did you mean '${near}'?)` : `unknown key '${key}' (valid: ${valid.join(', ')})`;
}

/**
 * The valid name closest to `key` by edit distance, when at most a quarter of it differs; else the one
 * valid name holding every `_`-separated word of `key` (num_layers → num_hidden_layers).
 */
export function nearest(key: string, valid: readonly string[]): string | undefined {
  let best: string | undefined, bestDistance = Infinity;
  for (const v of valid) {
    const d = editDistance(key.toLowerCase(), v.toLowerCase());
    if (d < bestDistance) { best = v; bestDistance = d; }
  }
  if (bestDistance <= Math.max(1, Math.floor(key.length / 4))) return best;
  const words = key.toLowerCase().split('_').filter((w) => w.length > 0);
  const holding = valid.filter((v) => words.every((w) => v.toLowerCase().split('_').includes(w)));
  return holding.length === 1 ? holding[0] : undefined;
}

/** Levenshtein distance (insert, delete, substitute; each costs 1). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row.push(Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = row;
  }
  return prev[b.length];
}

/**
 * Reads a JSON or YAML (.yaml/.yml) config file of snake_case keys.
 * @throws Error naming the file: not found, a directory ("is a directory, expected a JSON
 *   config file …"), unreadable, or not a JSON object / YAML mapping.
 */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EISDIR') throw new Error(`${path}: is a directory, expected a JSON config file (or .yaml/.yml), e.g. pipelines/configs/student.json`);
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new Error(`${path}: config file not found`);
    throw new Error(`${path}: cannot read the config file (${code ?? (e as Error).message})`);
  }
  const yaml = /\.ya?ml$/i.test(path);
  try {
    const parsed = yaml ? parseYaml(text) : JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    return parsed as Record<string, unknown>;
  } catch (e) { throw new Error(`${path}: not a ${yaml ? 'YAML mapping' : 'JSON object'} (${(e as Error).message.split('\n')[0]})`); }
}

/**
 * Converts yargs' camel/kebab flags to config keys: `--max-steps` → max_steps; drops unset ones.
 * The result carries each key's flag (see FlagOrigin) so that a bad value is blamed on the flag.
 * @throws Error "--lr: not a number" for a number flag (or list of numbers) yargs parsed to NaN.
 */
export function flagsToConfig(argv: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const origins: Record<string, FlagOrigin> = {};
  for (const key of keys) {
    const kebab = key.replace(/_/g, '-');
    const value = argv[kebab];
    // yargs turns '--lr fast' into NaN (and '--temperatures NaN' into [NaN])
    if (Number.isNaN(value) || (Array.isArray(value) && value.some((x) => Number.isNaN(x)))) throw new Error(`--${kebab}: not a number`);
    if (value === undefined) continue;
    out[key] = value;
    origins[key] = isObject(value) ? { flag: `--${kebab}`, innerKeys: Object.keys(value) } : { flag: `--${kebab}` };
  }
  return tagOrigins(out, origins);
}

/**
 * Flags over a config file: top-level keys replace, object values (e.g. `model`) are merged key by
 * key, so `--model '{"hidden_size":64}'` changes one field of the file's model. The flag origins of
 * `fromFlags` are kept.
 */
export function mergeConfig(fromFile: Record<string, unknown>, fromFlags: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...fromFile };
  for (const [key, value] of Object.entries(fromFlags)) {
    out[key] = isObject(value) && isObject(out[key]) ? { ...(out[key] as Record<string, unknown>), ...value } : value;
  }
  return tagOrigins(out, { ...flagOrigins(fromFile), ...flagOrigins(fromFlags) });
}

/**
 * yargs middleware: refuses a scalar flag given more than once (yargs would silently make it a list,
 * `--batch-size 4 --batch-size 0` → [4, 0]). `listOptions` (yargs' getOptions().array) are left alone.
 * @throws Error "--batch-size given 2 times (give it once)".
 */
export function refuseRepeatedFlags(argv: Record<string, unknown>, listOptions: string[]): void {
  const lists = new Set(listOptions);
  for (const [key, value] of Object.entries(argv)) {
    if (key === '_' || key === '$0' || /[A-Z]/.test(key) || !Array.isArray(value) || lists.has(key)) continue;
    throw new Error(`--${key} given ${value.length} times (give it once)`);
  }
}

/**
 * yargs `coerce` of a JSON-valued flag: the parsed object.
 * @throws Error "--model: not valid JSON (…)", "--model: must be a JSON object", "--model given 2 times".
 */
export const jsonFlag = (flag: string) => (text: unknown): Record<string, unknown> => {
  if (Array.isArray(text)) throw new Error(`--${flag} given ${text.length} times (give it once)`);
  let parsed: unknown;
  try { parsed = JSON.parse(String(text)); } catch (e) { throw new Error(`--${flag}: not valid JSON (${(e as Error).message.split('\n')[0]})`); }
  if (!isObject(parsed)) throw new Error(`--${flag}: must be a JSON object like '{"hidden_size":64}', got ${String(text)}`);
  return parsed;
};

/** The options of a yargs instance declared as lists (`type: 'array'`), once a command has parsed. */
export function listOptions(y: object): string[] {
  // yargs 17 has getOptions() at run time; @types/yargs does not declare it.
  return (y as { getOptions(): { array: string[] } }).getOptions().array;
}

/** Every option name of a yargs instance's current command (kebab and camelCase forms, help, version). */
export function optionNames(y: object): string[] {
  // As listOptions: yargs 17's getOptions() is not in @types/yargs.
  return Object.keys((y as { getOptions(): { key: Record<string, unknown> } }).getOptions().key);
}

/** The (sub)command being parsed, e.g. ['teacher', 'export']; [] at the top level. */
export function commandPath(y: object): string[] {
  // yargs 17 keeps it in its internal context; @types/yargs does not declare it.
  return (y as { getInternalMethods(): { getContext(): { commands: string[] } } }).getInternalMethods().getContext().commands;
}

/**
 * yargs `coerce` of a list-of-numbers flag declared `type: 'array'` (so help shows it as a list):
 * the numbers. @throws Error "--temperatures: not a number: fast".
 */
export const numberListFlag = (flag: string) => (values: unknown[]): number[] => values.map((v) => {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  if (!Number.isFinite(n)) throw new Error(`--${flag}: not a number: ${String(v)}`);
  return n;
});

/**
 * yargs `coerce` of an integer-list flag declared `type: 'array'`, accepting `2,4` as well as
 * `2 4`. @throws Error "--hidden-layers: not an integer: x".
 */
export const intListFlag = (flag: string) => (values: unknown[]): number[] => values.flatMap((v) => String(v).split(',')).filter((v) => v.trim() !== '').map((v) => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`--${flag}: not an integer: ${v}`);
  return n;
});

/** yargs `coerce` of a string-list flag declared `type: 'array'`, accepting `a,b` as well as `a b`. */
export const stringListFlag = (values: unknown[]): string[] => values.flatMap((v) => String(v).split(',')).filter((v) => v !== '');
