import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { REPO_CASES, TEAM_CASES } from './shared-cases.js';

describe('shared reference cases', () => {
  it('the repository copy equals the team copy beside the checkout, file by file (when present)', () => {
    const ours = readdirSync(REPO_CASES).filter((f) => f.endsWith('.json')).sort();
    expect(ours).toEqual(expect.arrayContaining(['encoding.json', 'kd_losses.json', 'perplexity.json']));
    if (!existsSync(TEAM_CASES)) return; // a clone elsewhere: only the copy exists
    for (const f of ours) expect(readFileSync(REPO_CASES + f, 'utf8'), f).toBe(readFileSync(TEAM_CASES + f, 'utf8'));
  });
});
