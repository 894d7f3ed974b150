import { timestamp } from 'drizzle-orm/pg-core';

/** created_at and updated_at, shared by every table that is edited after insert. */
export const timestamps = {
  createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp({ withTimezone: true })
    .notNull()
    .defaultNow()
    .$onUpdate(() => new Date()),
};

/** Largest value of a PostgreSQL `integer` column, such as pr_runs.pr_number. */
export const maxInteger = 2_147_483_647;
