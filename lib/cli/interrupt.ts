/**
 * Turns the first SIGINT/SIGTERM (Ctrl-C, `kill`, a scheduler's preemption notice) into an abort
 * of `controller`, so that a long stage can end cleanly (e.g. training saves a resumable state
 * after the current step); a second signal exits at once with code 130.
 * @param onSignal called with the first signal too (e.g. to forward SIGTERM to child processes)
 * @returns a function that removes the handlers
 */
export function abortOnSignals(controller: AbortController, what: string, onSignal?: (signal: NodeJS.Signals) => void): () => void {
  const handler = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write(`\n${signal}: ${what} (again to quit at once)\n`);
    controller.abort();
    onSignal?.(signal);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => { process.off('SIGINT', handler); process.off('SIGTERM', handler); };
}
