import { describe, expect, it } from 'vitest';
import { maskUrlPassword, maskUrlValue } from '../../src/config/env.ts';

describe('maskUrlPassword', () => {
  const cases: [string, string][] = [
    ['postgres://u:pw@127.0.0.1:1/db', 'postgres://u:***@127.0.0.1:1/db'],
    ['postgres://u:s3cr@t@127.0.0.1:1/db', 'postgres://u:***@127.0.0.1:1/db'],
    ['postgres://u:pass word@127.0.0.1:1/db', 'postgres://u:***@127.0.0.1:1/db'],
    ['postgres://u:a:b@127.0.0.1:1/db', 'postgres://u:***@127.0.0.1:1/db'],
    ['postgres://u:p%40ss@127.0.0.1:1/db', 'postgres://u:***@127.0.0.1:1/db'],
    ['postgres://:pw@127.0.0.1:1/db', 'postgres://:***@127.0.0.1:1/db'],
    ['postgres://my user:pw@127.0.0.1:1/db', 'postgres://my user:***@127.0.0.1:1/db'],
    ['postgres://u:a\u2028b@127.0.0.1:1/db', 'postgres://u:***@127.0.0.1:1/db'],
    [
      'postgresql://u:x@127.0.0.1:1/db?password=qsecret',
      'postgresql://u:***@127.0.0.1:1/db?password=***',
    ],
    [
      'postgres://u@127.0.0.1:1/db?sslmode=disable&password=qsecret&application_name=x',
      'postgres://u@127.0.0.1:1/db?sslmode=disable&password=***&application_name=x',
    ],
    ['postgres://u@127.0.0.1:1/db?PASSWORD=qsecret', 'postgres://u@127.0.0.1:1/db?PASSWORD=***'],
    // Values that new URL() rejects.
    ['postgres://u:top/secret@127.0.0.1:1/db', 'postgres://u:***@127.0.0.1:1/db'],
    ['postgres://u:pw@127.0.0.1:99999/db', 'postgres://u:***@127.0.0.1:99999/db'],
    ['postgres://u:pw@[::1:1/db', 'postgres://u:***@[::1:1/db'],
    ['mysql://admin:Sup3rS3cret@db.internal/app', 'mysql://admin:***@db.internal/app'],
    ['postgres://fixwright:ab://cd@127.0.0.1/db', 'postgres://fixwright:***@127.0.0.1/db'],
    ['postgres://u:ab://cd@ef@127.0.0.1/db', 'postgres://u:***@127.0.0.1/db'],
    ['url:postgres://u:pw@127.0.0.1/db', 'url:postgres://u:***@127.0.0.1/db'],
    // Nothing to mask.
    ['postgres://127.0.0.1:1/db', 'postgres://127.0.0.1:1/db'],
    ['postgres://u@127.0.0.1:1/db', 'postgres://u@127.0.0.1:1/db'],
    ['not a url', 'not a url'],
    // Text around URLs.
    [
      'from postgres://a:one@h1/db to postgres://b:two@h2/db',
      'from postgres://a:***@h1/db to postgres://b:***@h2/db',
    ],
    ['postgres://u:pw@h/db\nwrite to admin@example.com', 'postgres://u:***@h/db\nwrite to admin@example.com'],
    // An "@" after a path segment that starts with "@" belongs to the path, not to the password.
    [
      'https://user:pa55@host.example/path/@scope/pkg?x=a@b',
      'https://user:***@host.example/path/@scope/pkg?x=a@b',
    ],
    ['https://u:p/a@ss@host.example/', 'https://u:***@host.example/'],
    ['https://u:ab/@cd@host.example/', 'https://u:***@host.example/'],
  ];

  it.each(cases)('masks %j', (input, expected) => {
    expect(maskUrlPassword(input)).toBe(expected);
  });
});

describe('maskUrlValue', () => {
  const cases: [string, string][] = [
    // Mistyped or missing scheme.
    [
      'postgres:/fixwright:Sup3rSecret@127.0.0.1:5432/fixwright',
      'postgres:/fixwright:***@127.0.0.1:5432/fixwright',
    ],
    [
      'postgres//fixwright:Sup3rSecret@127.0.0.1:5432/fixwright',
      'postgres//fixwright:***@127.0.0.1:5432/fixwright',
    ],
    ['fixwright:Sup3rSecret@127.0.0.1:5432/fixwright', 'fixwright:***@127.0.0.1:5432/fixwright'],
    ['postgres:///u:Sup3rSecret@h/db', 'postgres:///u:***@h/db'],
    ['postgres:u:Sup3rSecret@h/db', 'postgres:***@h/db'],
    ['DATABASE_URL=postgres://u:Sup3rSecret@h/db', 'DATABASE_URL=postgres:***@h/db'],
    ['"postgres://u:Sup3rSecret@h/db"', '"postgres:***@h/db"'],
    ['mysql://admin:Sup3rSecret@db.internal/app', 'mysql://admin:***@db.internal/app'],
    // Passwords with characters that end a URL part.
    ['postgres://fixwright:ab://cd@127.0.0.1/db', 'postgres://fixwright:***@127.0.0.1/db'],
    ['postgres://u:s3cr@t@127.0.0.1:1/db', 'postgres://u:***@127.0.0.1:1/db'],
    ['postgres://u:top/secret@127.0.0.1:1/db', 'postgres://u:***@127.0.0.1:1/db'],
    ['postgres://u:pass word@127.0.0.1:1/db', 'postgres://u:***@127.0.0.1:1/db'],
    ['postgres://u:a\nb@127.0.0.1:1/db', 'postgres://u:***@127.0.0.1:1/db'],
    ['postgres://:pw@127.0.0.1:1/db', 'postgres://:***@127.0.0.1:1/db'],
    ['postgres://u:@127.0.0.1:1/db', 'postgres://u:***@127.0.0.1:1/db'],
    ['postgres://u:pw%zz@127.0.0.1:5432/db', 'postgres://u:***@127.0.0.1:5432/db'],
    ['https://u:p/a@ss@host.example/', 'https://u:***@host.example/'],
    ['https://u:ab/@cd@host.example/', 'https://u:***@host.example/'],
    // Path segments that start with "@".
    [
      'https://user:pa55@host.example/path/@scope/pkg?x=a@b',
      'https://user:***@host.example/path/@scope/pkg?x=a@b',
    ],
    ['user:pa55@host.example/@scope/pkg@1.0.0', 'user:***@host.example/@scope/pkg@1.0.0'],
    // Password parameters, also in libpq's key=value form.
    [
      'postgres://u@127.0.0.1:1/db?sslmode=disable&password=qsecret&application_name=x',
      'postgres://u@127.0.0.1:1/db?sslmode=disable&password=***&application_name=x',
    ],
    ['postgres://u@h/db?sslpassword=a#qsecret', 'postgres://u@h/db?sslpassword=***'],
    ['host=h user=u password=qsecret', 'host=h user=u password=***'],
    ['password=qsecret host=h', 'password=***'],
    // Nothing to mask.
    ['postgres://127.0.0.1:1/db', 'postgres://127.0.0.1:1/db'],
    ['postgres://u@127.0.0.1:1/db', 'postgres://u@127.0.0.1:1/db'],
    ['postgres:/u@127.0.0.1:1/db', 'postgres:/u@127.0.0.1:1/db'],
    ['ftp://fixwright.example.com', 'ftp://fixwright.example.com'],
    ['not a url', 'not a url'],
    ['', ''],
  ];

  it.each(cases)('masks %j', (input, expected) => {
    expect(maskUrlValue(input)).toBe(expected);
  });
});
