/**
 * Ensemble distillation's training data (--ensemble): several logit datasets over the same windows
 * read in the same order, joined into one batch whose teacher carries every member's rows; the
 * loss mixes them (lib/losses/ensemble.ts).
 */
import { join } from 'node:path';
import type { LogitManifest } from '../shards/index.js';
import { checkWeights } from '../losses/ensemble.js';
import type { Batch } from './batch.js';
import type { TrainingData } from './data.js';

/** One teacher of the ensemble: its dataset directory, manifest, data and weight. */
export interface EnsembleMemberData { dir: string; manifest: LogitManifest; data: TrainingData; weight: number }

/**
 * Parses `--ensemble "dirB:0.3,dirC:0.2"`: the other teachers and their weights; the primary dataset
 * (--data) gets 1 − Σ of them.
 * @param head what set the list, heading the errors: `--ensemble`, or `<config file>: ensemble`
 * @throws Error "<head> 'x' must be dir:weight pairs …" on a malformed list or weights outside (0, 1) summing to ≥ 1
 */
export function parseEnsemble(spec: string, head: string): { dir: string; weight: number }[] {
  if (spec.trim() === '') return [];
  const parts = spec.split(',').map((p) => {
    const m = /^(.+):([0-9.eE+-]+)$/.exec(p.trim());
    const weight = m ? Number(m[2]) : NaN;
    if (!m || !(weight > 0 && weight < 1)) throw new Error(`${head} '${spec}' must be dir:weight pairs with weights in (0, 1), e.g. runs/logits-b:0.5`);
    return { dir: m[1], weight };
  });
  const rest = 1 - parts.reduce((s, p) => s + p.weight, 0);
  if (!(rest > 0)) throw new Error(`${head} weights ${parts.map((p) => p.weight).join(' + ')} leave no weight for --data (they must sum to < 1)`);
  return parts;
}

/**
 * Refuses datasets that are not over the same windows, tokenizer and stored temperatures as the
 * first, naming both manifests.
 */
export function checkEnsembleManifests(members: { dir: string; manifest: LogitManifest }[]): void {
  const [a, ...rest] = members;
  const name = (d: string) => join(d, 'manifest.json');
  for (const b of rest) {
    const differ = (what: string, x: unknown, y: unknown) => {
      if (JSON.stringify(x) !== JSON.stringify(y)) throw new Error(`ensemble: ${name(b.dir)} and ${name(a.dir)} differ in ${what} (${JSON.stringify(y)} vs ${JSON.stringify(x)}): the teachers must label the same windows`);
    };
    differ('tokenizer.sha256', a.manifest.tokenizer.sha256, b.manifest.tokenizer.sha256);
    differ('windows.sha256', a.manifest.windows.sha256, b.manifest.windows.sha256);
    differ('seq_len', a.manifest.seq_len, b.manifest.seq_len);
    differ('totals.rows', a.manifest.totals.rows, b.manifest.totals.rows);
    differ('shards (rows per shard)', a.manifest.shards.map((s) => s.rows), b.manifest.shards.map((s) => s.rows));
    differ('temperatures', a.manifest.temperatures, b.manifest.temperatures);
    differ('mode', a.manifest.mode, b.manifest.mode);
  }
}

/**
 * Joins the members' batches: the inputs and targets must agree position by position (the same
 * windows in the same order); the primary's hidden states are kept.
 * @throws Error naming the datasets and the epoch position when two members' windows differ
 */
export function ensembleData(members: EnsembleMemberData[]): TrainingData {
  checkWeights(members.map((m) => m.weight), members.length);
  const [primary] = members;
  return {
    rows: primary.data.rows,
    seqLen: primary.data.seqLen,
    order: { ...primary.data.order, ensemble: members.map((m) => ({ data: m.dir, weight: m.weight })) },
    async batchAt(seed, epoch, start, count) {
      const batches: Batch[] = await Promise.all(members.map((m) => m.data.batchAt(seed, epoch, start, count)));
      const [b0] = batches;
      batches.forEach((b, i) => {
        if (!equal(b.inputIds, b0.inputIds) || !equal(b.targets, b0.targets)) {
          throw new Error(`ensemble: ${members[i].dir} and ${primary.dir} hold different windows at epoch ${epoch}, positions ${start}–${start + count - 1}`);
        }
      });
      return { ...b0, teacher: { ...b0.teacher!, ensemble: { weights: members.map((m) => m.weight), members: batches.map((b) => b.teacher!) } } };
    },
    close: async () => { await Promise.all(members.map((m) => m.data.close())); },
  };
}

function equal(a: Int32Array, b: Int32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
