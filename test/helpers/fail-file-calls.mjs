// Preloaded with `node --import` into a child process by the tests of file system failures. It
// makes calls of node:fs/promises on the paths that FIXWRIGHT_TEST_FAIL_FILE_CALLS names fail
// with the error that the system would give, such as ENOSPC for a full disk, so the tests need
// no full or read-only file system. The variable is a JSON array of
// {"call": "writeFile", "pathPrefix": "/abs/path", "code": "ENOSPC"}.
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import os from 'node:os';

const rules = JSON.parse(process.env.FIXWRIGHT_TEST_FAIL_FILE_CALLS ?? '[]');

/** The syscall that each patched call makes first, as Node names it in its errors. */
const syscalls = { writeFile: 'open', open: 'open', mkdir: 'mkdir', link: 'link', readFile: 'open' };

/** Node's texts of the errors, from libuv's error names. */
const descriptions = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EACCES: 'permission denied',
  EROFS: 'read-only file system',
};

function systemError(code, syscall, file) {
  const error = new Error(`${code}: ${descriptions[code]}, ${syscall} '${file}'`);
  return Object.assign(error, { errno: -os.constants.errno[code], code, syscall, path: file });
}

for (const [call, syscall] of Object.entries(syscalls)) {
  const matching = rules.filter((rule) => rule.call === call);
  if (matching.length === 0) continue;
  const original = fs.promises[call];
  fs.promises[call] = async function (file, ...rest) {
    const rule = matching.find((candidate) => String(file).startsWith(candidate.pathPrefix));
    if (rule) throw systemError(rule.code, syscall, String(file));
    return original.call(this, file, ...rest);
  };
}
// Named imports of node:fs/promises, such as `import { writeFile }`, see the patched calls.
syncBuiltinESMExports();
