import { emptyFileMarker } from './empty-file-marker.ts';
import { countFileDelimiters } from './prompt.ts';

/** The corrected file, which is the empty string when the model returned the empty-file marker. */
export type ParsedModelOutput = { ok: true; content: string } | { ok: false; reason: string };

/**
 * Matches text that is one fenced code block: an opening fence of 3 or more backticks or
 * tildes with an optional info string, the body, and a closing fence on the last line.
 * Groups: 1 opening fence, 2 body (undefined when empty), 3 closing fence.
 *
 * The pattern must not let two quantifiers match the same characters, or it tries every split
 * of a long run and takes minutes on a 200 KB file. So each fence is followed by a character
 * other than its own, which stops the info string from taking part of a tilde run, and one
 * `\s*` takes all white space after the closing fence.
 */
const wrappingFencePattern =
  /^\s*?(`{3,}(?!`)|~{3,}(?!~))[^\r\n`]*\r?\n(?:([\s\S]*?)\r?\n)?[ \t]*(`{3,}(?!`)|~{3,}(?!~))\s*$/;

/**
 * Returns the body of `text` when all of it is one fenced code block, else undefined. The
 * last fence closes the block, so fences nested in the body stay.
 */
function stripWrappingFence(text: string): string | undefined {
  const match = wrappingFencePattern.exec(text);
  if (!match) return undefined;

  const opening = match[1] ?? '';
  const closing = match[3] ?? '';
  // CommonMark: the closing fence uses the same character and is at least as long.
  if (closing[0] !== opening[0] || closing.length < opening.length) return undefined;
  return match[2] ?? '';
}

/** Matches a CommonMark code fence line: up to 3 spaces, then 3 or more backticks or tildes. */
const fenceLinePattern = /^ {0,3}(?:`{3,}|~{3,})/gm;

function countFenceLines(text: string): number {
  return [...text.matchAll(fenceLinePattern)].length;
}

type LineEndingStyle = 'crlf' | 'lf' | 'mixed' | 'none';

function detectLineEndings(text: string): LineEndingStyle {
  const lineFeeds = text.split('\n').length - 1;
  if (lineFeeds === 0) return 'none';
  const crlfs = text.split('\r\n').length - 1;
  if (crlfs === lineFeeds) return 'crlf';
  if (crlfs === 0) return 'lf';
  return 'mixed';
}

const loneCarriageReturn = /\r(?!\n)/g;

/**
 * Turns each CR that no LF follows into LF, so that output with classic Mac OS line breaks gets
 * the original's line endings below. An original with lone CRs of its own keeps the output's.
 */
function replaceLoneCarriageReturns(content: string, original: string): string {
  if (original.match(loneCarriageReturn)) return content;
  return content.replace(loneCarriageReturn, '\n');
}

/** Converts the output to the original's line endings when both use one style each. */
function restoreLineEndings(content: string, original: string): string {
  const originalStyle = detectLineEndings(original);
  const contentStyle = detectLineEndings(content);
  if (originalStyle === 'crlf' && contentStyle === 'lf') return content.replaceAll('\n', '\r\n');
  if (originalStyle === 'lf' && contentStyle === 'crlf') return content.replaceAll('\r\n', '\n');
  return content;
}

const byteOrderMark = '\uFEFF';

/** U+FFFD, which a lenient UTF-8 decoder puts in place of each invalid byte sequence. */
const replacementCharacter = '\uFFFD';

function countReplacementCharacters(text: string): number {
  return text.split(replacementCharacter).length - 1;
}

/** A UTF-16 surrogate without its other half. ES2024's String#isWellFormed is not in lib ES2023. */
const loneSurrogatePattern = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * Describes the lone surrogates of `text`, or returns null when it has none. JSON can escape
 * half of a surrogate pair (`"\ud83d"`), and the SDKs parse such a string without an error, but
 * PostgreSQL stores it as U+FFFD because it cannot be encoded as UTF-8.
 */
function describeLoneSurrogates(text: string, path: string): string | null {
  const found = text.match(loneSurrogatePattern);
  if (!found) return null;
  const codes = found.slice(0, 3).map((unit) => `U+${unit.charCodeAt(0).toString(16).toUpperCase()}`);
  if (found.length > codes.length) codes.push('...');
  const surrogates = found.length === 1 ? 'surrogate' : 'surrogates';
  return (
    `The model output for ${path} contains ${found.length} lone UTF-16 ${surrogates} ` +
    `(${codes.join(', ')}), half of a character that cannot be stored as UTF-8, so the ` +
    'output was discarded. Regenerate this file.'
  );
}

/**
 * Adds or removes the UTF-8 byte order mark so that the output starts like the original.
 * Models tend to drop it, and the diff would then show an invisible change on line 1.
 */
function restoreByteOrderMark(content: string, original: string): string {
  const originalHasMark = original.startsWith(byteOrderMark);
  const contentHasMark = content.startsWith(byteOrderMark);
  if (originalHasMark && !contentHasMark) return byteOrderMark + content;
  if (!originalHasMark && contentHasMark) return content.slice(byteOrderMark.length);
  return content;
}

/** Adds or removes one final line break so that the output ends like the original. */
function restoreFinalNewline(content: string, original: string): string {
  const originalEnds = original.endsWith('\n');
  const contentEnds = content.endsWith('\n');
  if (originalEnds && !contentEnds) {
    return content + (original.endsWith('\r\n') ? '\r\n' : '\n');
  }
  if (!originalEnds && contentEnds) return content.replace(/\r?\n$/, '');
  return content;
}

/**
 * Extracts the corrected file from a model's output text.
 *
 * Strips one code fence that wraps the whole text, unless the original file is itself one
 * fenced block and the text has no second layer. Text that is then the empty-file marker of
 * `original` (see emptyFileMarker), with white space around it, yields an empty file: no byte
 * order mark and no line break.
 *
 * Rejects text that is empty or white space without the marker, and text that contains the
 * marker and anything else. Also rejects text with a NUL character or a lone UTF-16 surrogate,
 * and text that contains more U+FFFD characters, code fence lines or prompt data block tags
 * than the original. `path` is the file's path, for the messages. Then restores the original's
 * byte order mark, its line ending style (lone CRs count as line breaks unless the original has
 * some, and each side must use one style throughout) and its final line break.
 */
export function parseModelOutput(text: string, original: string, path: string): ParsedModelOutput {
  let content = text;
  const unwrapped = stripWrappingFence(text);
  if (unwrapped !== undefined) {
    const originalIsFenced = stripWrappingFence(original) !== undefined;
    if (!originalIsFenced || stripWrappingFence(unwrapped) !== undefined) content = unwrapped;
  }

  const marker = emptyFileMarker(original);
  if (content.trim() === marker) return { ok: true, content: '' };
  if (content.trim() === '') {
    return {
      ok: false,
      reason:
        `The model output for ${path} is empty apart from white space or a code fence, and it ` +
        `lacks the marker ${marker} with which the model says that the corrected file is empty, ` +
        'so it was discarded as a failed response. Regenerate this file.',
    };
  }
  // The original does not contain its own marker (see emptyFileMarker), so the marker in longer
  // text cannot be file content.
  if (content.includes(marker)) {
    return {
      ok: false,
      reason:
        `The model output for ${path} contains the empty-file marker ${marker} together with ` +
        'other text, so it is neither the corrected file nor an empty file, and it was ' +
        'discarded. Regenerate this file.',
    };
  }
  // Files with NUL are never previewed, and PostgreSQL text cannot store it.
  if (content.includes('\0')) {
    return {
      ok: false,
      reason:
        'The model output contains a NUL character (U+0000), which a text file cannot ' +
        'contain, so it was discarded. Request the fix again.',
    };
  }
  // The provider's SDK decodes bytes that are not valid UTF-8 to U+FFFD, which would replace
  // characters of the user's code.
  // NOTE: only the counts are compared, so output that drops a U+FFFD of the file (with the line
  // a fix removes, say) and gets one from an invalid byte elsewhere is accepted.
  const addedReplacements = countReplacementCharacters(content) - countReplacementCharacters(original);
  if (addedReplacements > 0) {
    const characters = addedReplacements === 1 ? 'character' : 'characters';
    return {
      ok: false,
      reason:
        `The model output for ${path} contains ${addedReplacements} replacement ${characters} ` +
        '(U+FFFD) that the file does not have. U+FFFD marks bytes that were not valid UTF-8 ' +
        'in the provider\'s response, so the output was discarded. Regenerate this file.',
    };
  }
  const loneSurrogates = describeLoneSurrogates(content, path);
  if (loneSurrogates) return { ok: false, reason: loneSurrogates };
  // A fenced file with prose around it, or a fence left open, is not stripped above. Such
  // output has more fence lines than the file, and a fix of the listed findings adds none.
  if (countFenceLines(content) > countFenceLines(original)) {
    return {
      ok: false,
      reason:
        'The model output contains code fence lines (``` or ~~~) that the file does not ' +
        'have, such as explanations around a fenced block, so it is not the corrected file ' +
        'alone. Request the fix again.',
    };
  }
  // Both are counted as the file block frames them, so an original that ends in `</file`
  // matches output that ends in `</file` with or without a final line break.
  if (countFileDelimiters(content) > countFileDelimiters(original)) {
    return {
      ok: false,
      reason:
        'The model output contains the prompt\'s data block tags (such as <file> or ' +
        '<findings>), so it is not the corrected file alone.',
    };
  }

  content = restoreByteOrderMark(content, original);
  content = replaceLoneCarriageReturns(content, original);
  content = restoreLineEndings(content, original);
  content = restoreFinalNewline(content, original);
  return { ok: true, content };
}
