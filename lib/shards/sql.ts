/**
 * DuckDB SQL macros that decode the packed-le blob columns of a shard into lists, so a
 * logit dataset is queryable without kd. Run each statement once per connection, then e.g.
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
 * Decoding goes through hex(), ~0.4 s per million values: fine for inspection, not training.
 */

/** `CREATE OR REPLACE MACRO` statements, one per element, in dependency order. */
export const DUCKDB_MACROS: readonly string[] = [
  // uint16 / uint32 little-endian lists: split the hex string into 4/8-digit words, swap bytes.
  `CREATE OR REPLACE MACRO kd_u16s(b) AS
     list_transform(regexp_extract_all(hex(b), '.{4}'), c -> ('0x' || c[3:4] || c[1:2])::INTEGER)`,
  `CREATE OR REPLACE MACRO kd_u32s(b) AS
     list_transform(regexp_extract_all(hex(b), '.{8}'), c -> ('0x' || c[7:8] || c[5:6] || c[3:4] || c[1:2])::BIGINT)`,
  `CREATE OR REPLACE MACRO kd_i32s(b) AS
     list_transform(kd_u32s(b), u -> (CASE WHEN u >= 2147483648 THEN u - 4294967296 ELSE u END)::INTEGER)`,
  // IEEE 754 binary16 / binary32 bit patterns → value (exact in DOUBLE).
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
  `CREATE OR REPLACE MACRO kd_f16s(b) AS list_transform(kd_u16s(b), u -> kd_half(u)::FLOAT)`,
  `CREATE OR REPLACE MACRO kd_f32s(b) AS list_transform(kd_u32s(b), u -> kd_float(u)::FLOAT)`,
];
