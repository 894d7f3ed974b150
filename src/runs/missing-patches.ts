import type { Octokit } from '@octokit/rest';
import type { ChangedFile } from '../analysis/analyze.ts';
import { FileReadError, readFileAtRef, type RepositoryFile } from '../github/file-content.ts';
import type { PullRequestFile } from '../github/pull-files.ts';
import type { Logger } from '../logger.ts';

/** Size limit of one added file read in place of its missing patch, in bytes. */
export const maxAddedFileBytes = 5_000_000;

/**
 * Limit on the bytes of all added files read for one run, so a pull request that adds thousands
 * of large files neither keeps them all in memory nor uses up the installation's rate limit.
 * Files read and then rejected as binary or not UTF-8 count too.
 */
export const maxAddedBytesPerRun = 50_000_000;

export interface CompletedFiles {
  files: ChangedFile[];
  /** Paths of files with added lines that have neither a patch nor readable content. */
  uncheckedPaths: string[];
}

/** Builds the patch that adds every line of `text`, as git would write it for a new file. */
function additionPatch(text: string): string | null {
  const lines = text.split('\n');
  if (lines.at(-1) === '') {
    lines.pop();
  }
  if (lines.length === 0) {
    return null;
  }
  return [`@@ -0,0 +1,${lines.length} @@`, ...lines.map((line) => `+${line}`)].join('\n');
}

/**
 * Fills in the patches that GitHub leaves out. GitHub sends no `patch` for a file whose diff is
 * over 20,000 lines or 500 KB, and for binary files, which have no additions. An added file's
 * patch is every line of its content at `ref`, so it is read instead, up to `maxAddedFileBytes`
 * each and `maxTotalBytes` (default `maxAddedBytesPerRun`) in all. Other files with additions and
 * no patch, and added files that cannot be read as text or within those limits, are returned as
 * unchecked.
 */
export async function fillMissingPatches(
  octokit: Octokit,
  target: { owner: string; repo: string; ref: string },
  files: readonly PullRequestFile[],
  logger: Logger,
  options: { maxTotalBytes?: number } = {},
): Promise<CompletedFiles> {
  const completed: ChangedFile[] = [];
  const uncheckedPaths: string[] = [];
  let bytesLeft = options.maxTotalBytes ?? maxAddedBytesPerRun;

  for (const file of files) {
    if (file.patch || file.status === 'removed' || file.additions === 0) {
      completed.push(file);
      continue;
    }
    let patch: string | null = null;
    if (file.status === 'added' && bytesLeft > 0) {
      const maxBytes = Math.min(maxAddedFileBytes, bytesLeft);
      const { content, bytesRead } = await readAddedFile(octokit, { ...target, maxBytes }, file, logger);
      bytesLeft -= bytesRead;
      if (content !== null) {
        patch = additionPatch(content.text);
      }
    }
    if (patch === null) {
      uncheckedPaths.push(file.filename);
    }
    completed.push({ ...file, patch });
  }
  return { files: completed, uncheckedPaths };
}

async function readAddedFile(
  octokit: Octokit,
  target: { owner: string; repo: string; ref: string; maxBytes: number },
  file: PullRequestFile,
  logger: Logger,
): Promise<{ content: RepositoryFile | null; bytesRead: number }> {
  try {
    const content = await readFileAtRef(octokit, { ...target, path: file.filename });
    return { content, bytesRead: content?.size ?? 0 };
  } catch (error) {
    if (error instanceof FileReadError) {
      logger.info(
        { event: 'analyze.file_unreadable', path: file.filename, reason: error.reason },
        'added file without a patch could not be read; its lines stay unchecked',
      );
      // A file rejected as binary or not UTF-8 was downloaded all the same.
      return { content: null, bytesRead: error.bytesRead };
    }
    throw error;
  }
}
