import { describe, expect, it } from 'vitest';
import { passedOverKeysNotice, undecryptableReason, type PassedOverKey } from '../../src/keys/own-keys.ts';

describe('passedOverKeysNotice', () => {
  it.each<[string, PassedOverKey, string]>([
    [
      'a rejected own key',
      { provider: 'groq', keySource: 'user', cause: 'rejected', status: 401 },
      'Groq rejected your saved Groq key (HTTP 401), so this file used your own Gemini key, the ' +
        'next in your provider order, and not the platform key. Update your Groq key on the keys page.',
    ],
    [
      'a rejected platform key',
      { provider: 'groq', keySource: 'platform', cause: 'rejected', status: 403 },
      'Groq rejected the platform Groq key that this service provides (HTTP 403), so this file ' +
        'used your own Gemini key, the next in your provider order. The operator of this service ' +
        'has to replace the platform Groq key.',
    ],
    [
      'a rejection without status',
      { provider: 'groq', keySource: 'user', cause: 'rejected' },
      'Groq rejected your saved Groq key, so this file used your own Gemini key, the next in your ' +
        'provider order, and not the platform key. Update your Groq key on the keys page.',
    ],
    [
      'a deleted own key',
      { provider: 'groq', keySource: 'user', cause: 'deleted' },
      'Your saved Groq key was deleted while this preview ran, so this file used your own Gemini ' +
        'key, the next in your provider order, and not the platform key.',
    ],
    [
      'an own key that became unusable',
      { provider: 'groq', keySource: 'user', cause: 'unusable', reason: undecryptableReason('groq') },
      'Your saved Groq key changed while this preview ran and could not be used, so this file used ' +
        'your own Gemini key, the next in your provider order, and not the platform key. Your ' +
        'saved Groq key could not be decrypted; the master key may have changed. Save the Groq key ' +
        'again on the keys page.',
    ],
  ])('describes %s', (_case, passed, expected) => {
    expect(passedOverKeysNotice([passed], 'gemini')).toBe(expected);
  });
});
