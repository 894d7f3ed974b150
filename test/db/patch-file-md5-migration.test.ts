import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyMigration,
  createEmptyDatabase,
  migrateUpTo,
  type EmptyDatabase,
} from '../helpers/migrations.ts';

let database: EmptyDatabase;

beforeAll(async () => {
  database = await createEmptyDatabase('patch_file_md5', 'UTC');
});

afterAll(async () => {
  await database?.drop();
});

describe('patch_files MD5 index migration', () => {
  it('keeps the preview files stored before it', async () => {
    const { sql } = database;
    const md5Migration = await migrateUpTo(sql, '_patch_file_path_md5');

    // Rows as the old unique constraint allowed them: distinct paths within each request, and
    // the same path in two requests. The foreign keys are not checked for these rows.
    const [first, second] = [randomUUID(), randomUUID()];
    await sql.begin(async (tx) => {
      await tx`SET LOCAL session_replication_role = replica`;
      await tx`
        INSERT INTO patch_files (patch_request_id, path) VALUES
          (${first}, 'src/a.ts'), (${first}, 'src/b.ts'), (${second}, 'src/a.ts')
      `;
    });

    await applyMigration(sql, md5Migration);

    const rows = await sql<{ count: number }[]>`SELECT count(*)::int AS count FROM patch_files`;
    expect(rows[0]!.count).toBe(3);
    const duplicate = sql.begin(async (tx) => {
      await tx`SET LOCAL session_replication_role = replica`;
      await tx`INSERT INTO patch_files (patch_request_id, path) VALUES (${first}, 'src/a.ts')`;
    });
    await expect(duplicate).rejects.toMatchObject({
      code: '23505',
      constraint_name: 'patch_files_patch_request_id_md5_path_index',
    });
  });
});
