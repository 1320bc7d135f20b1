/**
 * Before training: the prep a run validates on must be the prep its logit dataset was computed
 * from, and its validation windows unedited. The manifest records the train windows' sha256 and
 * (since issue 9) the validation windows'; windows.json records both for the prep.
 */
import { join } from 'node:path';
import { readWindowsMeta } from '../data/windows.js';
import { sha256File, type LogitManifest } from '../shards/index.js';

const short = (h: string) => `${h.slice(0, 12)}…`;

/**
 * Checks `prepDir` against the logit dataset's manifest `m` (read from `manifestPath`): the train
 * windows' sha256 in windows.json must be the manifest's; validation.bin, hashed by streaming, must
 * be the file windows.json describes and (when the manifest records it) the one precompute saw.
 * @returns a one-line warning for a manifest written before the validation sha256 was recorded
 *   (the file is then checked against windows.json only), else undefined
 * @throws Error "<prep>/windows.json: not the prep the logits in <data>/manifest.json were computed
 *   from (…)"; "<prep>/windows.json: BOS mode … but the logits … were computed on windows with BOS mode …"; "<prep>/validation.bin: sha256 … differs from windows.json (…)"; "<prep>/validation.bin:
 *   not the validation windows of the prep the logits in <data>/manifest.json were computed from (…)"
 */
export async function checkPrepProvenance(prepDir: string, m: LogitManifest, manifestPath: string): Promise<string | undefined> {
  const meta = readWindowsMeta(prepDir);
  if (meta.splits.train.sha256 !== m.windows.sha256) {
    throw new Error(`${join(prepDir, 'windows.json')}: not the prep the logits in ${manifestPath} were computed from (train windows sha256 ${short(meta.splits.train.sha256)}, the dataset's ${short(m.windows.sha256)}, from ${m.windows.source}); give --prep the prep precompute read`);
  }
  const bos = m.windows.bos ?? 'none';
  if (meta.bos.mode !== bos) throw new Error(`${join(prepDir, 'windows.json')}: BOS mode ${meta.bos.mode}, but the logits in ${manifestPath} were computed on windows with BOS mode ${bos}; give --prep the prep precompute read`);
  const split = meta.splits.validation, path = join(prepDir, split.file);
  const actual = await sha256File(path).catch(() => { throw new Error(`${path}: not found (validation windows of ${join(prepDir, 'windows.json')})`); });
  if (actual !== split.sha256) throw new Error(`${path}: sha256 ${short(actual)} differs from windows.json (${short(split.sha256)}): changed after prep?`);
  const recorded = m.windows.validation_sha256;
  if (recorded === undefined) return `${manifestPath}: records no validation windows' sha256 (written by an older kd); the validation windows of ${prepDir} are checked only against its windows.json`;
  if (actual !== recorded) {
    throw new Error(`${path}: not the validation windows of the prep the logits in ${manifestPath} were computed from (sha256 ${short(actual)}, the dataset's ${short(recorded)})`);
  }
  return undefined;
}
