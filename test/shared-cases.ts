/**
 * The team's PyTorch float64 reference cases (shared/cases/*.json). A copy is kept in
 * test/fixtures/shared-cases so a clone anywhere can run the suite; when the shared folder sits
 * beside the repository (as in the team's checkout), it is read instead, and
 * shared-cases.test.ts checks that the copy has not drifted from it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Where the team's copy lives when the repository is checked out beside `shared/`. */
export const TEAM_CASES = fileURLToPath(new URL('../../shared/cases/', import.meta.url));
/** The copy kept in this repository. */
export const REPO_CASES = fileURLToPath(new URL('./fixtures/shared-cases/', import.meta.url));

/** Path of a case file: the team's when present, else the repository's copy. */
export function sharedCasePath(name: string): string {
  return existsSync(TEAM_CASES + name) ? TEAM_CASES + name : REPO_CASES + name;
}

/** Parsed case file, e.g. `sharedCases('kd_losses.json').cases`. */
export function sharedCases(name: string): { cases: any[] } & Record<string, any> {
  return JSON.parse(readFileSync(sharedCasePath(name), 'utf8'));
}
