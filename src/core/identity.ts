/**
 * Who a CLI user is, decided the same way wherever it matters: by the approval gate for a CLI
 * decision (with the worker's policy) and by the CLI for the requester of a run it starts (with the
 * config it was given, which the worker then checks is its own). The OS login is what the operator
 * cannot type freely; `--as` only confirms it, unless the cluster's policy allows declared
 * identities (`cliIdentity: declared`, for sandboxes and drills). Workflow-safe.
 */

/** How the identity behind a decision was established. */
export type VerifiedBy = 'os-login' | 'declared' | 'slack-signature' | 'signed-link';

export interface CliIdentityPolicy {
  cliIdentity?: 'login' | 'declared';
  /** OS login → person (people[].login). */
  logins?: Record<string, string>;
}

export type CliIdentity = { ok: true; identity: string; verifiedBy: 'os-login' | 'declared' } | { ok: false; refusal: string };

export function cliIdentity(policy: CliIdentityPolicy, login: string | undefined, declared: string | undefined): CliIdentity {
  const logins = policy.logins ?? {};
  const person = login !== undefined && Object.hasOwn(logins, login) ? logins[login] : undefined;
  const declaredAllowed = policy.cliIdentity === 'declared';
  if (person !== undefined) {
    if (!declared || declared === person) return { ok: true, identity: person, verifiedBy: 'os-login' };
    if (declaredAllowed) return { ok: true, identity: declared, verifiedBy: 'declared' };
    return { ok: false, refusal: `--as ${declared} is not who you are: OS login ${login} is ${person} (people[].login)` };
  }
  if (declaredAllowed) return declared ? { ok: true, identity: declared, verifiedBy: 'declared' } : { ok: false, refusal: 'say who you are: --as NAME' };
  return {
    ok: false,
    refusal: login
      ? `OS login ${login} is nobody's people[].login: a CLI identity comes from the OS login here (cliIdentity: login)`
      : 'no OS login came with the decision: a CLI identity comes from the OS login here (cliIdentity: login)',
  };
}
