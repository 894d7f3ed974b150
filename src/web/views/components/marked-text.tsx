import type { FC } from 'hono/jsx';
import { splitInvisibleCharacters } from '../../../text/invisible-characters.ts';

/**
 * Renders text from a pull request or a model with each invisible character (see
 * src/text/invisible-characters.ts) shown as a mark with its code point, such as "U+202E", in
 * place of the character. The page then displays the text in the order in which it is stored,
 * so a bidi override cannot make a line of a diff read reversed. JSX escapes the text.
 */
export const MarkedText: FC<{ text: string }> = ({ text }) => (
  <>
    {splitInvisibleCharacters(text).map((part) =>
      typeof part === 'string' ? (
        part
      ) : (
        <span class="char-mark" title={`${part.description}, shown in place of the invisible character`}>
          {part.codePoint}
        </span>
      ),
    )}
  </>
);
