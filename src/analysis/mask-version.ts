/**
 * Version of the secret masks in excerpts, stored with each finding. Raise it when a rule
 * masks more, so that excerpts stored before are masked again (see `remaskExcerptSteps` in
 * excerpt.ts).
 * Version 2 added bearer tokens, query credentials and URL passwords with `/`, `?` or `#`.
 * Version 3 added bearer tokens after `Authorization` that end at any character outside
 * b64token, URL passwords up to the last `@`, and more query credential names such as `key`.
 * Version 4 added URL passwords of fewer than 8 characters or with a `/@` before their first
 * `@`, and quoted bearer tokens that a space and more words follow.
 * The predicate of `findings_mask_version_index` contains this number, so raising it needs a
 * migration from `npx drizzle-kit generate`.
 */
export const excerptMaskVersion = 4;
