import { describe, expect, it } from 'vitest';
import { fromHalfBits, toHalfBits, decodeHalf, encodeHalf } from '../lib/logits/fp16.js';
import { sharedCases } from './shared-cases.js';

const cases = sharedCases('encoding.json').cases;
const fp16Case = cases.find((c: { name: string }) => c.name === 'fp16_bits');

describe('fp16 codec (shared/cases/encoding.json)', () => {
  it('decodes every reference bit pattern exactly', () => {
    fp16Case.bits_hex.forEach((hex: string, i: number) => {
      const got = fromHalfBits(parseInt(hex, 16));
      expect(Object.is(got, Number(fp16Case.values[i]))).toBe(true);
    });
  });
  it('encodes every reference value to its bit pattern', () => {
    fp16Case.values.forEach((v: string, i: number) => {
      expect(toHalfBits(Number(v)).toString(16).padStart(4, '0')).toBe(fp16Case.bits_hex[i]);
    });
  });
  it('rounds to nearest even and round-trips all finite halves', () => {
    expect(toHalfBits(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(toHalfBits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(toHalfBits(70000)).toBe(0x7c00);
    const bits = new Uint16Array(0x7c00).map((_, i) => i);
    expect(Array.from(encodeHalf(decodeHalf(bits)))).toEqual(Array.from(bits));
  });
});
