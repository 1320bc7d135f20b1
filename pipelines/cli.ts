/**
 * The `kd` command line as a yargs instance: one subcommand per stage, each stage's own yargs
 * command (every option and default lives with its stage). pipelines/kd.ts runs it; the tests parse
 * every command line the Makefile and pipelines/ write through it without running the stages.
 * Only the stage named on the command line is imported (all of them for `kd --help` or an unknown
 * stage), so that `kd inspect` or `kd prep` never loads TF.js, and `kd plan` never onnxruntime.
 */
import yargs, { Argv, CommandModule } from 'yargs';
import { commandPath, listOptions, optionNames, refuseRepeatedFlags } from '../lib/cli/config.js';
import { unknownOptionsMessage } from '../lib/cli/unknown-options.js';

/** What `parseOnly` stops with once a command line has parsed and validated. */
export class ParsedCommandLine extends Error {
  constructor(readonly argv: Record<string, unknown>) { super('parsed'); }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyCommand = CommandModule<any, any>;

/** Each stage's yargs command, imported on demand, in `kd --help` order. */
const STAGES: Record<string, () => Promise<AnyCommand>> = {
  prep: async () => (await import('../stages/prep.js')).command,
  teacher: async () => (await import('../stages/teacher.js')).command,
  precompute: async () => (await import('../stages/precompute.js')).command,
  merge: async () => (await import('../stages/precompute.js')).mergeCommand,
  train: async () => (await import('../stages/train.js')).command,
  sweep: async () => (await import('../stages/sweep.js')).command,
  eval: async () => (await import('../stages/eval.js')).command,
  export: async () => (await import('../stages/export.js')).command,
  inspect: async () => (await import('../stages/inspect.js')).command,
  convert: async () => (await import('../stages/convert.js')).command,
  plan: async () => (await import('../stages/plan.js')).command,
  cascade: async () => (await import('../stages/cascade.js')).command,
};

/**
 * The `kd` parser for `args` (without `node kd.js`), with the named stage's command loaded.
 * @param parseOnly stop after yargs' validation, before any stage handler runs: parseAsync then
 *   rejects with ParsedCommandLine (the command line is valid) or with the CLI's own error.
 */
export async function kdCli(args: string[], parseOnly = false): Promise<Argv> {
  const named = args.find((a) => !a.startsWith('-'));
  const names = named !== undefined && Object.hasOwn(STAGES, named) ? [named] : named === undefined && args.includes('--version') ? [] : Object.keys(STAGES);
  const commands = await Promise.all(names.map((n) => STAGES[n]()));
  const cli = yargs(args)
    .scriptName('kd')
    .usage('$0 <stage> [options]\n\nOffline knowledge distillation: prep → teacher → precompute → train → eval.');
  for (const c of commands) cli.command(c);
  cli
    .demandCommand(1, 'name a stage: prep, teacher, precompute, merge, train, sweep, eval, export, inspect, convert, plan or cascade')
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
