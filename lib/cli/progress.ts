import cliProgress from 'cli-progress';

/** A progress display: a live bar on a terminal, a line every ~10% otherwise (logs, CI). */
export interface Progress {
  /** @param done units finished so far; @param info short text such as "loss 3.21". */
  update(done: number, info?: string): void;
  stop(): void;
}

/**
 * Progress on stderr for `total` units of `unit` (e.g. tokens): done/total, rate, ETA.
 * Silent when `quiet`.
 */
export function createProgress(label: string, total: number, unit: string, quiet = false): Progress {
  const start = Date.now();
  if (quiet) return { update() {}, stop() {} };
  if (!process.stderr.isTTY) {
    let nextMark = 0.1;
    return {
      update(done, info = '') {
        if (done / total + 1e-9 < nextMark && done < total) return;
        while (nextMark <= done / total) nextMark += 0.1;
        const rate = done / Math.max(1e-3, (Date.now() - start) / 1000);
        process.stderr.write(`${label}: ${done}/${total} ${unit} (${Math.round((100 * done) / total)}%), ${rate.toFixed(rate < 10 ? 2 : 0)} ${unit}/s ${info}\n`);
      },
      stop() {},
    };
  }
  const bar = new cliProgress.SingleBar({
    format: `${label} [{bar}] {percentage}% | {value}/{total} ${unit} | {rate} ${unit}/s | ETA {eta_formatted} | {info}`,
    stream: process.stderr, hideCursor: true, etaBuffer: 50,
  }, cliProgress.Presets.shades_classic);
  bar.start(total, 0, { rate: '0', info: '' });
  return {
    update(done, info = '') {
      const rate = done / Math.max(1e-3, (Date.now() - start) / 1000);
      bar.update(done, { rate: rate.toFixed(rate < 10 ? 2 : 0), info });
    },
    stop() { bar.stop(); },
  };
}
