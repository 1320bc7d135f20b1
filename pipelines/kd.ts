/** The `kd` command line (see pipelines/cli.ts): one subcommand per stage. */
import { hideBin } from 'yargs/helpers';
import { kdCli } from './cli.js';

try {
  await kdCli(hideBin(process.argv)).parseAsync();
} catch (e) {
  // Bad input is reported as one line (the stages' errors name the file and the problem).
  process.stderr.write(`kd: ${(e as Error).message}\n`);
  process.exitCode = 1;
}
