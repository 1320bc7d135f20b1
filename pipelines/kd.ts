/** The `kd` command line (see pipelines/cli.ts): one subcommand per stage. */
import { hideBin } from 'yargs/helpers';
import { kdCli } from './cli.js';
import { userMessage } from '../lib/util/errors.js';

try {
  await (await kdCli(hideBin(process.argv))).parseAsync();
} catch (e) {
  // Bad input is reported as one line (the stages' errors name the file and the problem); a raw
  // system error (ENOSPC, EISDIR, …) becomes `<path>: <what happened>; <what to do>`.
  process.stderr.write(`kd: ${userMessage(e)}\n`);
  process.exitCode = 1;
}
