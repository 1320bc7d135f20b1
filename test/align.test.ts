/**
 * lib/tokenizer/align.ts on hand-computed cases: two documents "héllo" and "ab" (é is the two
 * bytes C3 A9) tokenized by a teacher and by a student with other boundaries, EOS after each.
 *
 *   bytes:    h  C3 A9 l  l  o | a  b |        (offsets 0…7, EOS at 6 and at 8)
 *   teacher:  [hé     ][llo   ]E[ab  ]E
 *   student:  [h][C3][A9 l][lo ]E[a][b]E
 */
import { describe, expect, it } from 'vitest';
import { alignPositions, byteSpans, kindOf, teacherKeys, TOKEN_KIND, tokenKey, windowStarts } from '../lib/tokenizer/align.js';

const EOS = 2;
/** Teacher ids: 0 "hé" (3 bytes), 1 "llo" (3), 2 EOS (0), 3 "ab" (2). */
const teacherLen = [3, 3, 0, 2];
/** Student ids: 10 "h", 11 C3, 12 A9 "l", 13 "lo", 14 EOS, 15 "a", 16 "b". */
const studentLen = Object.assign(new Array(17).fill(0), { 10: 1, 11: 1, 12: 2, 13: 2, 14: 0, 15: 1, 16: 1 }) as number[];

/** Keys of the tokens a student's positions predict: token j + 1 of `ids`, its start from the byte lengths. */
function studentKeys(ids: number[], len: number[], eos: number, start = 0): number[] {
  const starts: number[] = [];
  let at = start;
  for (const id of ids) { starts.push(at); at += len[id]; }
  return ids.slice(1).map((id, j) => tokenKey(starts[j + 1], kindOf(id, { eos, bos: null })));
}

describe('byte spans', () => {
  it('are the tokens\' byte offsets, EOS empty, from a window start', () => {
    expect(Array.from(byteSpans([0, 1, EOS, 3], teacherLen))).toEqual([0, 3, 3, 6, 6, 6, 6, 8]);
    expect(Array.from(byteSpans([3, EOS], teacherLen, 100))).toEqual([100, 102, 102, 102]);
    expect(() => byteSpans([7], teacherLen)).toThrow(/token id 7 at position 0 is outside the tokenizer's 4 ids/);
    expect(() => byteSpans([0, 1], teacherLen, 2 ** 32 - 4)).toThrow(/exceeds 4294967295/);
  });

  it('windowStarts: row r + 1 starts where row r\'s L inputs end; end is after the last target', () => {
    // stream hé llo E ab E as windows of L = 2: [hé, llo, E], [E, ab, E]
    const { starts, end } = windowStarts([0, 1, EOS, EOS, 3, EOS], 2, 2, teacherLen);
    expect(Array.from(starts)).toEqual([0, 6]);
    expect(end).toBe(8);
  });
});

describe('alignment rule', () => {
  const teacherInputs = [0, 1, EOS, 3], teacherTargets = [1, EOS, 3, EOS];
  const spans = byteSpans(teacherInputs, teacherLen);

  it('teacher keys: position t predicts targets[t], which starts where input t ends', () => {
    expect(Array.from(teacherKeys(spans, teacherTargets, { eos: EOS, bos: null }))).toEqual([
      tokenKey(3, TOKEN_KIND.text), tokenKey(6, TOKEN_KIND.eos), tokenKey(6, TOKEN_KIND.text), tokenKey(8, TOKEN_KIND.eos),
    ]);
  });

  it('aligns positions whose next tokens start at the same byte and are of the same kind (EOS and the next document apart)', () => {
    const student = [10, 11, 12, 13, 14, 15, 16, 14];
    const got = alignPositions(teacherKeys(spans, teacherTargets, { eos: EOS, bos: null }), studentKeys(student, studentLen, 14));
    // student position → predicts: C3@1, A9l@2, lo@4 (no teacher boundary: the teacher's is at 3), EOS@6 → t1, a@6 → t2, b@7, EOS@8 → t3
    expect(Array.from(got)).toEqual([-1, -1, -1, 1, 2, -1, 3]);
  });

  it('aligns inside a multi-byte character when both tokenizations split it there', () => {
    // teacher 2: ids 20 "h", 21 C3, 22 A9, 23 "llo", EOS 2 → it predicts C3@1, A9@2, llo@3, EOS@6
    const len = Object.assign(new Array(24).fill(0), { 2: 0, 20: 1, 21: 1, 22: 1, 23: 3 }) as number[];
    const tSpans = byteSpans([20, 21, 22, 23], len);
    const tKeys = teacherKeys(tSpans, [21, 22, 23, EOS], { eos: EOS, bos: null });
    const got = alignPositions(tKeys, studentKeys([10, 11, 12, 13, 14], studentLen, 14));
    expect(Array.from(got)).toEqual([0, 1, -1, 3]); // C3@1, A9l@2 (read "h C3" both), lo@4 (none), EOS@6
  });

  it('BOS is its own kind: after EOS at byte o, the BOS and the first text token at o are told apart', () => {
    const s = { eos: 2, bos: 1 };
    expect(kindOf(2, s)).toBe(TOKEN_KIND.eos);
    expect(kindOf(1, s)).toBe(TOKEN_KIND.bos);
    expect(kindOf(5, s)).toBe(TOKEN_KIND.text);
    expect(new Set([tokenKey(6, TOKEN_KIND.eos), tokenKey(6, TOKEN_KIND.bos), tokenKey(6, TOKEN_KIND.text), tokenKey(7, TOKEN_KIND.eos)]).size).toBe(4);
    expect(tokenKey(6, TOKEN_KIND.text)).toBeLessThan(tokenKey(7, TOKEN_KIND.eos)); // stream order
  });
});
