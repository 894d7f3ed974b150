import { relations } from 'drizzle-orm';
import { bigint, index, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { timestamps } from './columns.ts';
import { users } from './users.ts';

export const installations = pgTable(
  'installations',
  {
    /** GitHub's installation id. */
    id: bigint({ mode: 'number' }).primaryKey(),
    accountLogin: text().notNull(),
    accountId: bigint({ mode: 'number' }).notNull(),
    accountType: text().notNull(),
    /** The user who installed the app; their allowance pays for automatic work. */
    userId: uuid().references(() => users.id, { onDelete: 'set null' }),
    suspendedAt: timestamp({ withTimezone: true }),
    deletedAt: timestamp({ withTimezone: true }),
    /**
     * Time of the last `new_permissions_accepted` or `unsuspend` event. An access token that a
     * process cached before it may lack permissions that the installation has now.
     */
    permissionsChangedAt: timestamp({ withTimezone: true }),
    ...timestamps,
  },
  (table) => [index().on(table.userId)],
);

/** One row per X-GitHub-Delivery id, so a redelivered webhook does its work once. */
export const webhookDeliveries = pgTable('webhook_deliveries', {
  deliveryId: text().primaryKey(),
  event: text().notNull(),
  action: text(),
  installationId: bigint({ mode: 'number' }),
  receivedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  /** Result of the delivery, for example "run queued" or "ignored: action closed". */
  outcome: text(),
});

export const installationsRelations = relations(installations, ({ one }) => ({
  user: one(users, { fields: [installations.userId], references: [users.id] }),
}));
