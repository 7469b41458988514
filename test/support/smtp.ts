/**
 * A real SMTP server on loopback (smtp-server) that keeps every message, parsed by mailparser, and
 * every AUTH it was sent (with whether the connection was TLS by then). Without `tls` it offers no
 * STARTTLS, as a badly configured relay would.
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { simpleParser, type ParsedMail } from 'mailparser';

export interface Received {
  envelopeTo: string[];
  mail: ParsedMail;
}

export interface AuthSeen {
  username: string;
  password: string;
  /** The connection was TLS when the credentials arrived. */
  secure: boolean;
}

export interface TestSmtp {
  port: number;
  received: Received[];
  auths: AuthSeen[];
  close(): Promise<void>;
}

export async function startSmtp(opts: { rejectRcpt?: string; tls?: { key: string; cert: string } } = {}): Promise<TestSmtp> {
  const received: Received[] = [];
  const auths: AuthSeen[] = [];
  const server = new SMTPServer({
    authOptional: true,
    allowInsecureAuth: true,
    ...(opts.tls ? { key: opts.tls.key, cert: opts.tls.cert } : { disabledCommands: ['STARTTLS'] }),
    logger: false,
    onAuth(auth, session, cb) {
      auths.push({ username: auth.username ?? '', password: auth.password ?? '', secure: Boolean(session.secure) });
      cb(null, { user: 'ok' });
    },
    onRcptTo(address, _session, cb) {
      if (opts.rejectRcpt) {
        const err = new Error(opts.rejectRcpt) as Error & { responseCode: number };
        err.responseCode = 550;
        cb(err);
        return;
      }
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const envelopeTo = session.envelope.rcptTo.map((r) => r.address);
        simpleParser(Buffer.concat(chunks)).then(
          (mail) => {
            received.push({ envelopeTo, mail });
            cb();
          },
          (err) => cb(err as Error),
        );
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.server.address() as AddressInfo).port;
  return { port, received, auths, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

