// The rollout's arithmetic and its input schema; the control loop is tested against the simulated
// rack in test/rollout.test.ts.
import { describe, expect, it } from 'vitest';
import { standardFacets } from '../facets/standard.js';
import { DesiredVocabulary } from './desired.js';
import { includesPatch, resolveMaxUnavailable, rolloutInputSchema } from './rollout.js';

const RolloutInputSchema = rolloutInputSchema(new DesiredVocabulary(standardFacets));

describe('rollout input and arithmetic', () => {
  it('resolves maxUnavailable as a count or a percentage of the group, rounded down, at least 1', () => {
    expect(resolveMaxUnavailable(5, 30)).toBe(5);
    expect(resolveMaxUnavailable(50, 30)).toBe(50);
    expect(resolveMaxUnavailable('10%', 30)).toBe(3);
    expect(resolveMaxUnavailable('25%', 10)).toBe(2);
    expect(resolveMaxUnavailable('1%', 30)).toBe(1);
    expect(resolveMaxUnavailable('100%', 7)).toBe(7);
  });

  it('tells whether a desired state already says what a patch says', () => {
    expect(includesPatch({ power: 'on', image: 'compute@2' }, { image: 'compute@2' })).toBe(true);
    expect(includesPatch({ power: 'on', image: 'compute@1' }, { image: 'compute@2' })).toBe(false);
    expect(includesPatch({ power: 'on' }, { image: 'compute@2' })).toBe(false);
    expect(includesPatch({ power: 'on' }, { boot: null })).toBe(true);
    expect(includesPatch({ power: 'on', boot: 'disk' }, { boot: null })).toBe(false);
    expect(includesPatch({ power: 'on', image: 'compute@2' }, { power: 'on', image: 'compute@2' })).toBe(true);
  });

  it('accepts a selector, a desired patch and a count or percentage, and nothing else', () => {
    const ok = { selector: 'role=compute', desired: { image: 'compute@2' }, maxUnavailable: 5 };
    expect(RolloutInputSchema.parse(ok)).toEqual(ok);
    expect(RolloutInputSchema.parse({ ...ok, maxUnavailable: '10%' }).maxUnavailable).toBe('10%');
    for (const maxUnavailable of [0, -1, 2.5, '0%', '101%', '5', '%', 'ten', null]) {
      expect(RolloutInputSchema.safeParse({ ...ok, maxUnavailable }).success, String(maxUnavailable)).toBe(false);
    }
    expect(RolloutInputSchema.safeParse({ ...ok, selector: '' }).success).toBe(false);
    expect(RolloutInputSchema.safeParse({ ...ok, desired: {} }).success).toBe(false);
    expect(RolloutInputSchema.safeParse({ ...ok, desired: { image: 'nope' } }).success).toBe(false);
    expect(RolloutInputSchema.safeParse({ ...ok, extra: 1 }).success).toBe(false);
  });
});
