/**
 * Field-by-field validation of a parsed manifest.json (types in manifest.ts). Every problem
 * is one line: `"<where>: missing field 'k'"`, `"<where>: field 'k' must be a positive
 * integer (got -1)"`, `"<where>: not a kd-logits manifest (format 'x')"`.
 */
import { SPAN_TOKENIZER_FILE, SPAN_UNIT, type LogitManifest } from './manifest.js';
import { checkValueStep } from './compact.js';
import { SHARD_LAYOUTS } from './schema.js';

type Kind = 'object' | 'string' | 'posint' | 'nonnegint' | 'strings' | 'array' | 'id';

const WHAT: Record<Kind, string> = {
  object: 'an object', string: 'a non-empty string', posint: 'a positive integer',
  nonnegint: 'a non-negative integer', strings: 'an array of strings', array: 'an array',
  id: 'an integer (number or decimal string)',
};

/** Required fields in check order; parents before children. */
const FIELDS: [string, Kind][] = [
  ['teacher', 'object'], ['teacher.path', 'string'], ['teacher.sha256', 'string'],
  ['teacher.dtype', 'string'], ['teacher.execution_provider', 'string'],
  ['teacher.input_names', 'strings'], ['teacher.output_names', 'strings'],
  ['tokenizer', 'object'], ['tokenizer.sha256', 'string'], ['tokenizer.vocab_size', 'posint'],
  ['tokenizer.real_vocab_size', 'posint'],
  ['windows', 'object'], ['windows.source', 'string'], ['windows.sha256', 'string'],
  ['seq_len', 'posint'], ['k', 'posint'], ['mode', 'string'], ['temperatures', 'array'],
  ['encoding', 'object'], ['encoding.ids', 'string'], ['encoding.values', 'string'], ['encoding.layout', 'string'],
  ['shards', 'array'], ['totals', 'object'], ['totals.rows', 'nonnegint'], ['totals.positions', 'nonnegint'],
  ['totals.bytes', 'nonnegint'], ['tool_version', 'string'], ['created_at', 'string'],
];

const SHARD_FIELDS: [string, Kind][] = [
  ['file', 'string'], ['rows', 'posint'], ['first_sample_id', 'id'], ['bytes', 'nonnegint'], ['sha256', 'string'],
];

/** Page codecs a dataset may record (the writer's ShardCodec). */
const SHARD_CODECS: readonly string[] = ['BROTLI', 'GZIP', 'SNAPPY', 'UNCOMPRESSED'];

const ONE_OF: [string, readonly string[]][] = [
  ['mode', ['topk', 'sampled']], ['encoding.ids', ['uint16', 'uint32']],
  ['encoding.values', ['float16', 'float32']], ['encoding.layout', SHARD_LAYOUTS],
];

function get(obj: unknown, path: string): unknown {
  let cur = obj;
  for (const key of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

function isKind(v: unknown, kind: Kind): boolean {
  switch (kind) {
    case 'object': return v !== null && typeof v === 'object' && !Array.isArray(v);
    case 'string': return typeof v === 'string' && v.length > 0;
    case 'posint': return Number.isSafeInteger(v) && (v as number) > 0;
    case 'nonnegint': return Number.isSafeInteger(v) && (v as number) >= 0;
    case 'strings': return Array.isArray(v) && v.every((s) => typeof s === 'string');
    case 'array': return Array.isArray(v);
    case 'id': return Number.isSafeInteger(v) || (typeof v === 'string' && /^-?\d+$/.test(v));
  }
}

function checkFields(obj: unknown, fields: [string, Kind][], where: string, prefix = ''): void {
  for (const [path, kind] of fields) {
    const v = get(obj, path);
    if (v === undefined) throw new Error(`${where}: missing field '${prefix}${path}'`);
    if (!isKind(v, kind)) throw new Error(`${where}: field '${prefix}${path}' must be ${WHAT[kind]} (got ${JSON.stringify(v)})`);
  }
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Optional fields (absent in manifests written before resumable precompute). */
function checkOptional(m: LogitManifest, where: string): void {
  const tok = m.teacher.tokenizer_sha256;
  if (tok !== undefined && tok !== null && !(typeof tok === 'string' && HEX64.test(tok))) {
    throw new Error(`${where}: field 'teacher.tokenizer_sha256' must be a sha256 (64 hex digits) or null (got ${JSON.stringify(tok)})`);
  }
  const val = m.windows.validation_sha256;
  if (val !== undefined && !(typeof val === 'string' && HEX64.test(val))) {
    throw new Error(`${where}: field 'windows.validation_sha256' must be a sha256 (64 hex digits) (got ${JSON.stringify(val)})`);
  }
  if (m.complete !== undefined && typeof m.complete !== 'boolean') {
    throw new Error(`${where}: field 'complete' must be true or false (got ${JSON.stringify(m.complete)})`);
  }
  if (m.worker !== undefined) {
    checkFields(m, [['worker', 'object'], ['worker.index', 'nonnegint'], ['worker.count', 'posint']], where);
    if (m.worker.index >= m.worker.count) throw new Error(`${where}: worker.index ${m.worker.index} must be < worker.count ${m.worker.count}`);
  }
  const from = m.converted_from as unknown as Record<string, unknown> | undefined;
  if (from !== undefined && !(typeof from === 'object' && from !== null && typeof from.dir === 'string' && from.dir.length > 0
    && SHARD_LAYOUTS.includes(from.layout as never) && typeof from.manifest_sha256 === 'string' && HEX64.test(from.manifest_sha256))) {
    throw new Error(`${where}: field 'converted_from' must be {dir, layout (one of ${SHARD_LAYOUTS.join(', ')}), manifest_sha256 (64 hex digits)} (got ${JSON.stringify(from)})`);
  }
  if (m.plan !== undefined) {
    checkFields(m, [['plan', 'object'], ['plan.rows', 'nonnegint'], ['plan.rows_per_shard', 'posint'], ['plan.shards', 'nonnegint'], ['plan.batch_size', 'posint']], where);
    const want = Math.ceil(m.plan.rows / m.plan.rows_per_shard);
    if (m.plan.shards !== want) throw new Error(`${where}: plan.shards ${m.plan.shards} != ceil(plan.rows / plan.rows_per_shard) = ${want}`);
  }
}

function checkShards(m: LogitManifest, where: string): void {
  const seen = new Set<string>();
  m.shards.forEach((s, i) => {
    checkFields(s, SHARD_FIELDS, where, `shards[${i}].`);
    if (/[/\\]/.test(s.file) || s.file.startsWith('.')) throw new Error(`${where}: shards[${i}].file '${s.file}' must be a plain file name`);
    if (seen.has(s.file)) throw new Error(`${where}: shard '${s.file}' is listed twice`);
    seen.add(s.file);
  });
  const rows = m.shards.reduce((a, s) => a + s.rows, 0);
  const bytes = m.shards.reduce((a, s) => a + s.bytes, 0);
  if (rows !== m.totals.rows) throw new Error(`${where}: totals.rows ${m.totals.rows} != ${rows}, the sum over shards`);
  if (bytes !== m.totals.bytes) throw new Error(`${where}: totals.bytes ${m.totals.bytes} != ${bytes}, the sum over shards`);
}

/**
 * Validates a parsed manifest in place and returns it typed, with every
 * `first_sample_id` normalised to a decimal string. Throws one-line errors prefixed
 * with `where` (normally `"<dir>/manifest.json"`).
 */
export function validateManifest(obj: unknown, where: string): LogitManifest {
  if (!isKind(obj, 'object')) throw new Error(`${where}: not a kd-logits manifest (not a JSON object)`);
  const format = get(obj, 'format');
  if (format !== 'kd-logits') throw new Error(`${where}: not a kd-logits manifest (format ${JSON.stringify(format)})`);
  const version = get(obj, 'version');
  if (version !== 1) throw new Error(`${where}: unsupported kd-logits manifest version ${JSON.stringify(version)} (this tool reads 1)`);
  checkFields(obj, FIELDS, where);
  for (const [path, allowed] of ONE_OF) {
    const v = get(obj, path);
    if (!allowed.includes(v as string)) throw new Error(`${where}: field '${path}' must be one of ${allowed.join(', ')} (got ${JSON.stringify(v)})`);
  }
  const codec = get(obj, 'encoding.codec'); // optional: datasets written before it was recorded lack it
  if (codec !== undefined && !SHARD_CODECS.includes(codec as string)) {
    throw new Error(`${where}: field 'encoding.codec' must be one of ${SHARD_CODECS.join(', ')} (got ${JSON.stringify(codec)})`);
  }
  const m = obj as LogitManifest;
  const temps = m.temperatures as unknown[];
  if (temps.length === 0 || !temps.every((t) => typeof t === 'number' && Number.isFinite(t) && t > 0)) {
    throw new Error(`${where}: field 'temperatures' must be a non-empty array of positive numbers (got ${JSON.stringify(temps)})`);
  }
  if (m.tokenizer.real_vocab_size > m.tokenizer.vocab_size) {
    throw new Error(`${where}: tokenizer.real_vocab_size ${m.tokenizer.real_vocab_size} > vocab_size ${m.tokenizer.vocab_size}`);
  }
  if (m.k > m.tokenizer.real_vocab_size) {
    throw new Error(`${where}: k ${m.k} > tokenizer.real_vocab_size ${m.tokenizer.real_vocab_size}`);
  }
  if (m.encoding.ids === 'uint16' && m.tokenizer.real_vocab_size > 0x10000) {
    throw new Error(`${where}: encoding.ids uint16 cannot hold real_vocab_size ${m.tokenizer.real_vocab_size}`);
  }
  checkOptional(m, where);
  checkCompact(m, where);
  checkSampling(m, where);
  checkHidden(m, where);
  checkSpans(m, where);
  checkShards(m, where);
  for (const s of m.shards) s.first_sample_id = String(s.first_sample_id);
  return m;
}

/**
 * Layout `compact`: `encoding.value_step` a power of two 2^-m (m = 0..5) and values float16; any
 * shard's `kl_error` {mean, max} non-negative numbers. Other layouts have neither.
 */
function checkCompact(m: LogitManifest, where: string): void {
  const compact = m.encoding.layout === 'compact';
  if (compact) {
    checkValueStep(m.encoding.value_step, `${where}: field 'encoding.value_step'`);
    if (m.encoding.values !== 'float16') throw new Error(`${where}: layout compact needs encoding.values 'float16' (got '${m.encoding.values}')`);
  } else if (m.encoding.value_step !== undefined) {
    throw new Error(`${where}: field 'encoding.value_step' is only valid with layout 'compact' (layout is '${m.encoding.layout}')`);
  }
  m.shards.forEach((s, i) => {
    const e = s.kl_error as unknown;
    if (e === undefined) return;
    const { mean, max } = (e ?? {}) as Record<string, unknown>;
    const ok = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v >= -1e-9;
    if (!compact || !ok(mean) || !ok(max)) throw new Error(`${where}: shards[${i}].kl_error must be {mean, max} ≥ 0 of a compact dataset (got ${JSON.stringify(e)})`);
  });
}

/** `sampling` is present exactly in `sampled` datasets, with samples = k and τg a stored temperature. */
function checkSampling(m: LogitManifest, where: string): void {
  const s = m.sampling as unknown;
  if (m.mode !== 'sampled') {
    if (s !== undefined) throw new Error(`${where}: field 'sampling' is only valid with mode 'sampled' (mode is '${m.mode}')`);
    return;
  }
  if (s === undefined) throw new Error(`${where}: mode 'sampled' needs the field 'sampling'`);
  checkFields(m, [['sampling', 'object'], ['sampling.samples', 'posint'], ['sampling.seed', 'nonnegint'], ['sampling.uniforms', 'string']], where);
  const { samples, temperature } = m.sampling!;
  if (samples !== m.k) throw new Error(`${where}: sampling.samples ${samples} != k ${m.k}`);
  if (!m.temperatures.includes(temperature)) throw new Error(`${where}: sampling.temperature ${JSON.stringify(temperature)} is not one of the stored temperatures [${m.temperatures}]`);
}

/** The optional `hidden` record: layers distinct non-negative integers, width > 0, dtype float16, projection well formed. */
function checkHidden(m: LogitManifest, where: string): void {
  const h = m.hidden as unknown;
  if (h === undefined) return;
  const bad = (why: string) => new Error(`${where}: field 'hidden' ${why} (got ${JSON.stringify(h)})`);
  if (typeof h !== 'object' || h === null) throw bad('must be an object');
  const { layers, width, dtype, projection, tensors } = h as Record<string, unknown>;
  if (!Array.isArray(layers) || layers.length === 0 || !layers.every((l) => Number.isInteger(l) && l >= 0) || new Set(layers).size !== layers.length) {
    throw bad('layers must be a non-empty list of distinct integers ≥ 0');
  }
  if (!Number.isInteger(width) || (width as number) <= 0) throw bad('width must be a positive integer');
  if (dtype !== 'float16') throw bad("dtype must be 'float16'");
  if (tensors !== undefined && !(Array.isArray(tensors) && tensors.length === layers.length && tensors.every((t) => typeof t === 'string'))) throw bad('tensors must name one tensor per layer');
  if (projection === null || projection === undefined) return;
  const p = projection as Record<string, unknown>;
  if (!Number.isInteger(p.seed) || p.dim !== width || typeof p.kind !== 'string' || !Number.isInteger(p.rows)) throw bad('projection must be {kind, seed, rows, dim = width}');
}

/** The optional `spans` record (SpanInfo): unit, offset dtype, the tokenizer file, EOS/BOS ids, the text it covers. */
function checkSpans(m: LogitManifest, where: string): void {
  const s = m.spans as unknown;
  if (s === undefined) return;
  const bad = (why: string) => new Error(`${where}: field 'spans' ${why} (got ${JSON.stringify(s)})`);
  if (typeof s !== 'object' || s === null) throw bad('must be an object');
  const { unit, dtype, tokenizer, eos_id, bos_id, text_bytes, train_documents, train_bytes } = s as Record<string, unknown>;
  const count = (v: unknown) => Number.isInteger(v) && (v as number) >= 0;
  if (unit !== SPAN_UNIT) throw bad(`unit must be '${SPAN_UNIT}'`);
  if (dtype !== 'uint16' && dtype !== 'uint32') throw bad("dtype must be 'uint16' or 'uint32'");
  if (tokenizer !== SPAN_TOKENIZER_FILE) throw bad(`tokenizer must be '${SPAN_TOKENIZER_FILE}'`);
  if (!count(eos_id)) throw bad('eos_id must be an integer ≥ 0');
  if (bos_id !== null && !count(bos_id)) throw bad('bos_id must be an integer ≥ 0 or null');
  if (!count(text_bytes) || !count(train_documents) || !count(train_bytes)) throw bad('text_bytes, train_documents and train_bytes must be integers ≥ 0');
  if ((text_bytes as number) > (dtype === 'uint16' ? 0xffff : 0xffffffff)) throw bad(`text_bytes does not fit dtype ${dtype as string}`);
}
