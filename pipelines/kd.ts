/**
 * The `kd` command line: one subcommand per stage. It only composes the stages' own yargs
 * commands; every option and default lives with its stage.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import * as prep from '../stages/prep.js';
import * as teacher from '../stages/teacher.js';
import * as precompute from '../stages/precompute.js';
import * as train from '../stages/train.js';
import * as sweep from '../stages/sweep.js';
import * as evaluate from '../stages/eval.js';
import * as inspect from '../stages/inspect.js';
import * as exportStage from '../stages/export.js';

try {
  await yargs(hideBin(process.argv))
    .scriptName('kd')
    .usage('$0 <stage> [options]\n\nOffline knowledge distillation: prep → teacher → precompute → train → eval.')
    .command(prep.command)
    .command(teacher.command)
    .command(precompute.command)
    .command(precompute.mergeCommand)
    .command(train.command)
    .command(sweep.command)
    .command(evaluate.command)
    .command(exportStage.command)
    .command(inspect.command)
    .demandCommand(1, 'name a stage: prep, teacher, precompute, merge, train, sweep, eval, export or inspect')
    .strictCommands()
    .strictOptions()
    .fail((msg, err) => { throw err ?? new Error(msg); })
    .help()
    .wrap(Math.min(120, process.stdout.columns ?? 100))
    .parseAsync();
} catch (e) {
  // Bad input is reported as one line (the stages' errors name the file and the problem).
  process.stderr.write(`kd: ${(e as Error).message}\n`);
  process.exitCode = 1;
}
