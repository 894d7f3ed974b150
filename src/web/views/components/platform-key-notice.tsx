import type { FC } from 'hono/jsx';
import { platformKeySettingNames } from '../../../autofix/provider-client.ts';
import {
  describePlatformKeyRejection,
  operatorMustReplace,
  type PlatformKeyRejection,
} from '../../../keys/platform-key-rejections.ts';
import { providerNames } from '../../../llm/retry.ts';
import { Time } from './time.tsx';

/**
 * The home page's card about platform keys that the provider rejected. Admins get the setting
 * to change, and other users what previews do meanwhile. Nothing is shown without a rejection.
 */
export const PlatformKeyNotice: FC<{
  rejections: PlatformKeyRejection[];
  admin: boolean;
  recheckSeconds: number;
}> = ({ rejections, admin, recheckSeconds }) => {
  if (rejections.length === 0) return null;
  return (
    <section class="card notice" id="platform-key-rejections">
      <h2>{rejections.length === 1 ? 'Platform key rejected' : 'Platform keys rejected'}</h2>
      {rejections.map((rejection) => (
        <p data-provider={rejection.provider}>
          {admin ? (
            <AdminText rejection={rejection} recheckSeconds={recheckSeconds} />
          ) : (
            `${describePlatformKeyRejection(rejection.provider, rejection.status)}. ` +
            `${operatorMustReplace(rejection.provider)} Until then, previews do not use it. ` +
            'The keys page shows which key your previews use instead.'
          )}
        </p>
      ))}
    </section>
  );
};

const AdminText: FC<{ rejection: PlatformKeyRejection; recheckSeconds: number }> = ({
  rejection,
  recheckSeconds,
}) => {
  const name = providerNames[rejection.provider];
  const setting = platformKeySettingNames[rejection.provider];
  const status = rejection.status === null ? '' : ` with HTTP ${rejection.status}`;
  return (
    <>
      {`${name} rejected the platform ${name} key (${setting})${status} at `}
      <Time date={rejection.rejectedAt} />
      {`. Previews send it no requests, and try it again once every ${recheckSeconds} s, next at `}
      <Time date={rejection.recheckAt} />
      {`. Set ${setting} to a working ${name} key and restart Fixwright, which uses a new key at once.`}
    </>
  );
};
