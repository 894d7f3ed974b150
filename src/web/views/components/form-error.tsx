import type { FC } from 'hono/jsx';

/**
 * The reason a form's submit was rejected, shown on the page next to the form. `id` lets the
 * invalid field point to it with `aria-describedby`.
 */
export const FormError: FC<{ message: string; id?: string }> = ({ message, id }) => (
  <p class="error" role="alert" id={id}>
    {message}
  </p>
);
