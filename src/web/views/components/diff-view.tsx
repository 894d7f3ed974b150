import type { FC } from 'hono/jsx';
import { parseUnifiedDiff } from '../../diff/parse-unified-diff.ts';
import { MarkedText } from './marked-text.tsx';

const signs = { header: '', hunk: '', context: ' ', add: '+', delete: '-', note: '' } as const;

/**
 * Renders a unified diff as a table with old and new line numbers. JSX escapes the text, and
 * invisible characters show as marks.
 */
export const DiffView: FC<{ diff: string }> = ({ diff }) => {
  const rows = parseUnifiedDiff(diff).filter((row) => row.kind !== 'header');
  return (
    <div class="diff-scroll">
      <table class="diff">
        <tbody>
          {rows.map((row) => (
            <tr class={`diff-${row.kind}`}>
              <td class="line-number">{row.oldLine ?? ''}</td>
              <td class="line-number">{row.newLine ?? ''}</td>
              <td class="sign">{signs[row.kind]}</td>
              <td class="code">
                <code>
                  <MarkedText text={row.text} />
                </code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
};
