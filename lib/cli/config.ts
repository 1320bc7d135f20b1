import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';

/** A range/type check for one config field: returns an error fragment ("must be …") or undefined. */
export type FieldCheck = (value: unknown) => string | undefined;

export const isInt = (lo: number, hi = Number.MAX_SAFE_INTEGER): FieldCheck => (v) =>
  Number.isInteger(v) && (v as number) >= lo && (v as number) <= hi ? undefined : `must be an integer in [${lo}, ${hi}]`;
export const isNum = (lo: number, hi: number, open = false): FieldCheck => (v) =>
  typeof v === 'number' && Number.isFinite(v) && (open ? v > lo && v < hi : v >= lo && v <= hi) ? undefined : `must be a number in ${open ? '(' : '['}${lo}, ${hi}${open ? ')' : ']'}`;
export const isOneOf = (...allowed: unknown[]): FieldCheck => (v) => (allowed.includes(v) ? undefined : `must be one of ${allowed.join(', ')}`);
export const isString: FieldCheck = (v) => (typeof v === 'string' && v.length > 0 ? undefined : 'must be a non-empty string');
export const isBool: FieldCheck = (v) => (typeof v === 'boolean' ? undefined : 'must be true or false');
export const optional = (check: FieldCheck): FieldCheck => (v) => (v === undefined || v === null ? undefined : check(v));

/**
 * Merges `partial` over `defaults` and validates every field: unknown keys and failed checks throw
 * a one-line error naming `source` ("train config: unknown key 'lr_max' (valid: …)").
 */
export function resolveConfig<T extends object>(defaults: T, checks: Record<keyof T, FieldCheck>, partial: Record<string, unknown>, source: string): T {
  const keys = Object.keys(checks);
  for (const key of Object.keys(partial)) {
    if (!keys.includes(key)) throw new Error(`${source}: unknown key '${key}' (valid: ${keys.join(', ')})`);
  }
  const defined = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined));
  const cfg = { ...defaults, ...defined } as T;
  for (const key of keys as (keyof T)[]) {
    const problem = checks[key](cfg[key]);
    if (problem) throw new Error(`${source}: ${String(key)} = ${Number.isNaN(cfg[key]) ? 'NaN' : JSON.stringify(cfg[key])} ${problem}`);
  }
  return cfg;
}

/** Reads a JSON or YAML (.yaml/.yml) config file of snake_case keys. @throws Error naming the file. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch { throw new Error(`${path}: config file not found`); }
  const yaml = /\.ya?ml$/i.test(path);
  try {
    const parsed = yaml ? parseYaml(text) : JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    return parsed as Record<string, unknown>;
  } catch (e) { throw new Error(`${path}: not a ${yaml ? 'YAML mapping' : 'JSON object'} (${(e as Error).message.split('\n')[0]})`); }
}

/** Converts yargs' camel/kebab flags to config keys: `--max-steps` → max_steps; drops unset ones. */
export function flagsToConfig(argv: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const kebab = key.replace(/_/g, '-');
    if (Number.isNaN(argv[kebab])) throw new Error(`--${kebab}: not a number`); // yargs turns '--lr fast' into NaN
    if (argv[kebab] !== undefined) out[key] = argv[kebab];
  }
  return out;
}

/**
 * Flags over a config file: top-level keys replace, object values (e.g. `model`) are merged key by
 * key, so `--model '{"hidden_size":64}'` changes one field of the file's model.
 */
export function mergeConfig(fromFile: Record<string, unknown>, fromFlags: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...fromFile };
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  for (const [key, value] of Object.entries(fromFlags)) {
    out[key] = isObject(value) && isObject(out[key]) ? { ...(out[key] as Record<string, unknown>), ...value } : value;
  }
  return out;
}
