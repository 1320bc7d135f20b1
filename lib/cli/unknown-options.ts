/**
 * yargs' strict-mode refusal of a flag ("Unknown arguments: seq-len, seqLen") rewritten as kd's one
 * line: the flag once (not its camelCase alias), the stage that does not take it, and either why it
 * belongs elsewhere or the stage's nearest option.
 */
import { nearest } from './config.js';

/** Flags users give to stages that get the value elsewhere, and where it comes from. */
const ELSEWHERE: Record<string, string> = {
  'seq-len': 'the window length is set by kd prep --seq-len and read from the prep output',
};

/** `seqLen` → `seq-len`. */
const kebab = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/**
 * The one-line message for yargs' `Unknown argument(s): …`, or undefined for any other message.
 * @param message yargs' validation message
 * @param command the stage as typed, e.g. `train`, `teacher export`
 * @param options the stage's option names as yargs holds them (kebab, camelCase aliases, help, …)
 * @param typed the command line as typed, to show a flag as given (yargs reports `--no-x` as `x`, `-x` as `x`)
 * @returns e.g. "--seq-len is not a kd train option (the window length is set by kd prep --seq-len
 *   and read from the prep output)" or "--batch-sise is not a kd train option (did you mean --batch-size?)";
 *   several flags are joined with "; ".
 */
export function unknownOptionsMessage(message: string, command: string, options: readonly string[], typed: readonly string[] = []): string | undefined {
  const m = /^Unknown arguments?: (.+)$/.exec(message);
  if (!m) return undefined;
  const given = m[1].split(', ');
  const flags = given.filter((name) => !(/[A-Z]/.test(name) && given.includes(kebab(name)))); // yargs adds seqLen for seq-len
  const valid = options.filter((o) => !/[A-Z]/.test(o) && o !== 'help' && o !== 'version' && o !== '$0');
  const stage = command ? `kd ${command}` : 'kd';
  return flags.map((flag) => {
    const name = kebab(flag);
    const near = nearest(name.replace(/-/g, '_'), valid.map((o) => o.replace(/-/g, '_')));
    const why = ELSEWHERE[name] ?? (near ? `did you mean --${near.replace(/_/g, '-')}?` : `see ${stage} --help`);
    return `${asTyped(name, typed)} is not a ${stage} option (${why})`;
  }).join('; ');
}

/** `name` as the user wrote it: `-x` for a short flag, `--no-x` when only the negation was typed, else `--x`. */
function asTyped(name: string, typed: readonly string[]): string {
  const wrote = (flag: string) => typed.some((a) => a === flag || a.startsWith(`${flag}=`));
  if (name.length === 1) return `-${name}`;
  return !wrote(`--${name}`) && wrote(`--no-${name}`) ? `--no-${name}` : `--${name}`;
}
