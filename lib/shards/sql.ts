/**
 * DuckDB SQL macros that decode the blob columns of a shard into lists, so a logit dataset is
 * queryable without kd. Run each statement once per connection, then e.g.
 *
 * ```sql
 * SELECT sample_id,
 *        kd_u16s(topk_ids)[1:4]    AS first_ids,     -- encoding.ids = uint16 (else kd_u32s)
 *        kd_f16s(topk_logits)[1:4] AS first_logits,  -- encoding.values = float16 (else kd_f32s)
 *        kd_f32s(log_z)[1]         AS log_z_tau1,
 *        exp(kd_f16s(topk_logits)[1] - kd_f32s(log_z)[1]) AS p_top1_pos0  -- τ = temperatures[0] = 1
 * FROM read_parquet('logits/shard-*.parquet') ORDER BY sample_id;
 * ```
 * Lists are 1-based in SQL; position t, rank j lives at index t*k + j + 1.
 *
 * `kd_u16s`, `kd_u32s`, `kd_i32s`, `kd_f16s`, `kd_f32s` read manifest `encoding.layout` =
 * `packed-le-split` (what kd writes): a blob of n values of w bytes holds byte 0 of every
 * value, then byte 1 of every value, …; in hex(b), byte j of value i (0-based) is the two
 * digits at 2(j·n + i) + 1. The same names with `_packed_le` (`kd_f16s_packed_le`, …) read
 * archived `packed-le` datasets (each value's bytes in order). Decoding goes through hex(),
 * ~0.3 s per million 2-byte values and ~0.7 s per million 4-byte ones on the 2-core dev
 * machine (1.2–1.6× the `_packed_le` macros): fine for inspection, not training.
 */

/** IEEE 754 binary16 / binary32 bit patterns (integers) → value (exact in DOUBLE). */
const FLOAT_MACROS = [
  `CREATE OR REPLACE MACRO kd_half(u) AS
     (CASE WHEN u >= 32768 THEN -1.0 ELSE 1.0 END) * CASE (u >> 10) & 31
       WHEN 0 THEN (u & 1023) * pow(2, -24)
       WHEN 31 THEN CASE WHEN (u & 1023) = 0 THEN 'inf'::DOUBLE ELSE 'nan'::DOUBLE END
       ELSE (1024 + (u & 1023)) * pow(2, ((u >> 10) & 31) - 25) END`,
  `CREATE OR REPLACE MACRO kd_float(u) AS
     (CASE WHEN u >= 2147483648 THEN -1.0 ELSE 1.0 END) * CASE (u >> 23) & 255
       WHEN 0 THEN (u & 8388607) * pow(2, -149)
       WHEN 255 THEN CASE WHEN (u & 8388607) = 0 THEN 'inf'::DOUBLE ELSE 'nan'::DOUBLE END
       ELSE (8388608 + (u & 8388607)) * pow(2, ((u >> 23) & 255) - 150) END`,
];

/** Typed lists on top of the unsigned-word macros `kd_u16s<suffix>` and `kd_u32s<suffix>`. */
function typedMacros(suffix: string): string[] {
  return [
    `CREATE OR REPLACE MACRO kd_i32s${suffix}(b) AS
       list_transform(kd_u32s${suffix}(b), u -> (CASE WHEN u >= 2147483648 THEN u - 4294967296 ELSE u END)::INTEGER)`,
    `CREATE OR REPLACE MACRO kd_f16s${suffix}(b) AS list_transform(kd_u16s${suffix}(b), u -> kd_half(u)::FLOAT)`,
    `CREATE OR REPLACE MACRO kd_f32s${suffix}(b) AS list_transform(kd_u32s${suffix}(b), u -> kd_float(u)::FLOAT)`,
  ];
}

/** `CREATE OR REPLACE MACRO` statements, one per element, in dependency order. */
export const DUCKDB_MACROS: readonly string[] = [
  ...FLOAT_MACROS,
  // packed-le-split: cut hex(b) into w equal parts (byte planes), split each into 2-digit bytes,
  // zip the planes and join the bytes of each value, most significant first.
  `CREATE OR REPLACE MACRO kd_split2(h) AS
     list_transform(list_zip(regexp_extract_all(h[1 : length(h) // 2], '..'),
                             regexp_extract_all(h[length(h) // 2 + 1 :], '..')),
                    p -> ('0x' || p[2] || p[1])::INTEGER)`,
  `CREATE OR REPLACE MACRO kd_split4(h) AS
     list_transform(list_zip(regexp_extract_all(h[1 : length(h) // 4], '..'),
                             regexp_extract_all(h[length(h) // 4 + 1 : length(h) // 2], '..'),
                             regexp_extract_all(h[length(h) // 2 + 1 : 3 * length(h) // 4], '..'),
                             regexp_extract_all(h[3 * length(h) // 4 + 1 :], '..')),
                    p -> ('0x' || p[4] || p[3] || p[2] || p[1])::BIGINT)`,
  `CREATE OR REPLACE MACRO kd_u16s(b) AS kd_split2(hex(b))`,
  `CREATE OR REPLACE MACRO kd_u32s(b) AS kd_split4(hex(b))`,
  ...typedMacros(''),
  // packed-le: split hex(b) into 4/8-digit words, swap bytes.
  `CREATE OR REPLACE MACRO kd_u16s_packed_le(b) AS
     list_transform(regexp_extract_all(hex(b), '.{4}'), c -> ('0x' || c[3:4] || c[1:2])::INTEGER)`,
  `CREATE OR REPLACE MACRO kd_u32s_packed_le(b) AS
     list_transform(regexp_extract_all(hex(b), '.{8}'), c -> ('0x' || c[7:8] || c[5:6] || c[3:4] || c[1:2])::BIGINT)`,
  ...typedMacros('_packed_le'),
];
