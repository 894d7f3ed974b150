import net from 'node:net';

/**
 * Binds a throw-away TCP server to `host`:`port` and closes it again. Returns the bind error
 * (EADDRINUSE, EADDRNOTAVAIL, EACCES, ENOTFOUND, ...), or undefined when the bind worked.
 */
export function probeListen(host: string, port: number): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', (error: NodeJS.ErrnoException) => resolve(error));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(undefined)));
  });
}
