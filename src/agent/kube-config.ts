// A KubeConfig whose API clients reuse their connections to the API server.
//
// client-node 1.4 builds a new http.Agent or https.Agent, without
// keepAlive, for every API call: KubeConfig.applySecurityAuthentication
// calls createAgent each time (dist/config.js of 1.4.0). So every call
// opened a new TCP connection, and against a real API server paid a TLS
// handshake too, on the path from a held SYN to the scale-up. 1.4.0 is the
// last release that runs on Node.js 20. This subclass keeps
// one keep-alive agent per set of TLS options and puts it in place of the
// per-call agent. Proxy agents, which client-node builds for a cluster's
// proxyUrl, are left as they are.
// TODO: drop this once the agent moves to a client-node that reuses agents.

import http from 'node:http';
import https from 'node:https';

import { KubeConfig, type RequestContext } from '@kubernetes/client-node';

// Agents kept at once. TLS options change only when credentials rotate,
// and an agent of rotated credentials is closed when it falls out.
const MAX_AGENTS = 4;

// An idle connection closes after this long, so that a connection that a
// load balancer in front of the API server dropped while idle for longer
// is not reused. A request in progress is not affected.
const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

// The constructor's options, which Node.js keeps on every Agent.
type AgentWithOptions = (http.Agent | https.Agent) & { options?: https.AgentOptions };

export class KeepAliveKubeConfig extends KubeConfig {
  private readonly agents = new Map<string, http.Agent>();

  constructor(private readonly idleTimeoutMs = DEFAULT_IDLE_TIMEOUT_MS) {
    super();
  }

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);

    const perCall = context.getAgent() as AgentWithOptions | undefined;
    if (perCall === undefined || perCall.options === undefined) return;
    const kind: unknown = perCall.constructor;
    const secure = kind === https.Agent;
    if (!secure && kind !== http.Agent) return;

    context.setAgent(this.sharedAgent(secure, perCall.options));
    // The per-call agent has opened no socket yet.
    perCall.destroy();
  }

  // Closes the kept connections, for a clean stop.
  destroyAgents(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }

  private sharedAgent(secure: boolean, options: https.AgentOptions): http.Agent {
    const key = agentKey(secure, options);
    let agent = this.agents.get(key);
    if (agent !== undefined) return agent;

    // Node.js destroys a pooled socket when its timeout fires while it is
    // idle, and only reports it on a request in progress.
    const settings = { ...options, keepAlive: true, timeout: options.timeout ?? this.idleTimeoutMs };
    agent = secure ? new https.Agent(settings) : new http.Agent(settings);
    this.agents.set(key, agent);
    if (this.agents.size > MAX_AGENTS) {
      const [oldestKey, oldest] = this.agents.entries().next().value as [string, http.Agent];
      this.agents.delete(oldestKey);
      oldest.destroy();
    }
    return agent;
  }
}

// The options that decide which connections an agent may share: the TLS
// identity of both ends and the timeout.
function agentKey(secure: boolean, options: https.AgentOptions): string {
  const text = (value: unknown) => (value === undefined ? '' : Buffer.isBuffer(value) ? value.toString('base64') : JSON.stringify(value));
  return [
    secure ? 'https' : 'http',
    text(options.ca),
    text(options.cert),
    text(options.key),
    text(options.pfx),
    text(options.passphrase),
    text(options.rejectUnauthorized),
    text(options.servername),
    text(options.timeout),
  ].join('|');
}
