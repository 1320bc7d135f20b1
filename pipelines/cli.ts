/**
 * The `kd` command line as a yargs instance: one subcommand per stage, each stage's own yargs
 * command (every option and default lives with its stage). pipelines/kd.ts runs it; the tests parse
 * every command line the Makefile and pipelines/ write through it without running the stages.
 */
import yargs, { Argv } from 'yargs';
import * as prep from '../stages/prep.js';
import * as teacher from '../stages/teacher.js';
import * as precompute from '../stages/precompute.js';
import * as train from '../stages/train.js';
import * as sweep from '../stages/sweep.js';
import * as evaluate from '../stages/eval.js';
import * as inspect from '../stages/inspect.js';
import * as exportStage from '../stages/export.js';
import * as plan from '../stages/plan.js';
import * as cascade from '../stages/cascade.js';
import * as convert from '../stages/convert.js';
import { commandPath, listOptions, optionNames, refuseRepeatedFlags } from '../lib/cli/config.js';
import { unknownOptionsMessage } from '../lib/cli/unknown-options.js';

/** What `parseOnly` stops with once a command line has parsed and validated. */
export class ParsedCommandLine extends Error {
  constructor(readonly argv: Record<string, unknown>) { super('parsed'); }
}

/**
 * The `kd` parser for `args` (without `node kd.js`).
 * @param parseOnly stop after yargs' validation, before any stage handler runs: parseAsync then
 *   rejects with ParsedCommandLine (the command line is valid) or with the CLI's own error.
 */
export function kdCli(args: string[], parseOnly = false): Argv {
  const cli = yargs(args)
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
    .command(convert.command)
    .command(plan.command)
    .command(cascade.command)
    .demandCommand(1, 'name a stage: prep, teacher, precompute, merge, train, sweep, eval, export, inspect, convert or plan')
    .strictCommands()
    .strictOptions()
    .fail((msg, err) => {
      if (err) throw err;
      const unknown = unknownOptionsMessage(msg, commandPath(cli).join(' '), optionNames(cli), args);
      throw new Error(unknown ?? msg.replace(/\s*\n\s*/g, ' ')); // yargs puts choices on lines of their own: one line
    })
    .help()
    .wrap(Math.min(120, process.stdout.columns ?? 100));
  cli.middleware((argv) => refuseRepeatedFlags(argv, listOptions(cli)));
  // Global middleware runs after validation and before the (sub)command's handler.
  if (parseOnly) cli.middleware((argv) => { throw new ParsedCommandLine(argv); });
  return cli;
}
