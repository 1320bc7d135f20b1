/**
 * Writing derived models (graph surgery results) so ORT can still find the original's external
 * data: ORT resolves `location` relative to the model file and refuses paths (and symlinks)
 * that leave the model's directory, and onnxruntime-node cannot take external data for a
 * model opened from bytes.
 */
import { existsSync, linkSync, mkdirSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { copyFileDurable } from '../util/fs.js';
import { tmpdir } from 'node:os';
import { basename, dirname, isAbsolute, join, normalize, resolve, sep } from 'node:path';
import { externalDataFiles } from './inspect.js';
import { writeOnnx } from './proto.js';
import { openOnnxSession, OnnxSession, OpenSessionOptions } from './session.js';

/** Hard link (free, same file system) or else a copy (reflink where the file system can). */
function linkOrCopy(original: string, target: string): void {
  mkdirSync(dirname(target), { recursive: true });
  try {
    linkSync(original, target);
  } catch {
    copyFileDurable(original, target);
  }
}

/**
 * Writes `bytes` (a model derived from the one at `srcPath`) atomically to `destPath`. When the
 * directories differ, each external data file is hard-linked (copied across file systems) into
 * the destination directory first, so the model only appears once it is loadable.
 * @throws Error naming `srcPath` for an external data location outside the model directory or a
 *   missing external data file.
 */
export function writeDerivedOnnx(srcPath: string, bytes: Uint8Array, destPath: string): void {
  const srcDir = dirname(resolve(srcPath)), destDir = dirname(resolve(destPath));
  for (const loc of externalDataFiles(bytes, srcPath)) {
    if (isAbsolute(loc) || normalize(loc).split(sep).includes('..')) {
      throw new Error(`${srcPath}: external data location '${loc}' is outside the model directory`);
    }
    const original = join(srcDir, loc), target = join(destDir, loc);
    if (!existsSync(original)) throw new Error(`${srcPath}: external data file '${loc}' not found next to the model`);
    if (srcDir !== destDir && !existsSync(target)) linkOrCopy(original, target);
  }
  writeOnnx(destPath, bytes);
}

/**
 * Where the external data files of the model at `srcPath` really are, when any of them is a
 * symlink that leaves the model's directory — the Hugging Face hub cache layout, where
 * `snapshots/<rev>/model.onnx_data` links to `../../blobs/<sha256>`. ORT refuses such data
 * ("External data path escapes model directory"), so the derived model is then opened from a
 * directory of hard links to the real files instead.
 * @returns location → real path, or undefined when every file resolves inside the model directory
 */
function escapingExternalData(srcPath: string, locations: string[]): Map<string, string> | undefined {
  const srcDir = realpathSync(dirname(resolve(srcPath)));
  const real = new Map(locations.map((loc) => [loc, realpathSync(join(dirname(resolve(srcPath)), loc))]));
  return [...real.values()].some((p) => dirname(p) !== srcDir) ? real : undefined;
}

/** A fresh directory holding hard links (or, across file systems, copies) named `loc` to each real file. */
function stageLinks(real: Map<string, string>): string {
  const first = [...real.values()][0];
  let dir: string;
  try { dir = mkdtempSync(join(dirname(first), '.kd-derived-')); } catch { dir = mkdtempSync(join(tmpdir(), 'kd-derived-')); }
  for (const [loc, path] of real) linkOrCopy(path, join(dir, loc));
  return dir;
}

/**
 * Opens `derived` — a graph-surgery result of the model at `srcPath` — as a session, also when the
 * original keeps its weights in external data: onnxruntime-node cannot resolve external data for
 * a model given as bytes, so the derived model is then written beside the original (or, if that
 * directory is not writable, into a temporary directory with the data hard-linked or copied),
 * opened by path and deleted again. A hub-cache model (data symlinked out of its directory) is
 * opened from a temporary directory of hard links beside the real files. The session's `source`
 * is `srcPath`.
 * @throws Error as {@link openOnnxSession} and {@link writeDerivedOnnx}, naming `srcPath`.
 */
export async function openDerivedSession(srcPath: string, derived: Uint8Array, opts: OpenSessionOptions = {}): Promise<OnnxSession> {
  const locations = externalDataFiles(derived, srcPath);
  if (locations.length === 0) return openOnnxSession(derived, { ...opts, source: srcPath });
  const name = `.kd-derived-${process.pid}-${basename(srcPath)}`;
  const missing = locations.find((loc) => !existsSync(join(dirname(resolve(srcPath)), loc)));
  const escaping = missing === undefined ? escapingExternalData(srcPath, locations) : undefined;
  let dir: string | undefined, path = join(dirname(resolve(srcPath)), name);
  try {
    if (escaping) {
      dir = stageLinks(escaping);
      path = join(dir, name);
      writeOnnx(path, derived);
    } else writeDerivedOnnx(srcPath, derived, path);
  } catch (e) {
    if (!/EACCES|EROFS|EPERM/.test(String((e as NodeJS.ErrnoException).code))) throw e;
    dir = mkdtempSync(join(tmpdir(), 'kd-derived-'));
    path = join(dir, name);
    writeDerivedOnnx(srcPath, derived, path);
  }
  try {
    return { ...(await openOnnxSession(path, opts)), source: srcPath };
  } finally {
    rmSync(path, { force: true });
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}
