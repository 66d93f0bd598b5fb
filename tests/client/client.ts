// A program a seller's engineer would write against the generated types: it compiles only if
// the document describes each call as the server makes it (paths, bodies, list shapes, the
// problem+json errors). tests/client.sh generates generated/synchub.d.ts and type-checks this.
import createClient from "openapi-fetch";
import type { components, paths } from "./generated/synchub";

type Problem = components["schemas"]["Problem"];
type Flow = components["schemas"]["FlowView"];

const api = createClient<paths>({
  baseUrl: "http://127.0.0.1:8080",
  headers: { Authorization: "Bearer shk_..." },
});

function explain(problem: Problem): string {
  const fields = (problem.errors ?? []).map((e) => `${e.field}: ${e.message}`);
  return `${problem.status} ${problem.code}: ${problem.detail} ${fields.join("; ")}`;
}

export async function connectAndSync(): Promise<Flow[]> {
  const shop = await api.POST("/v1/connections", {
    body: {
      name: "US store",
      connector: "shopify",
      environment: "production",
      settings: { shop_domain: "acme.myshopify.com" },
      credentials: { access_token: "shpat_..." },
    },
  });
  if (shop.error) throw new Error(explain(shop.error));
  const erp = await api.POST("/v1/connections", {
    body: {
      name: "ERP",
      connector: "lingxing",
      environment: "production",
      settings: {},
      credentials: { app_id: "ak_...", app_secret: "..." },
    },
  });
  if (erp.error) throw new Error(explain(erp.error));
  const flow = await api.POST("/v1/flows", {
    body: {
      name: "orders in",
      stream: "orders",
      source: shop.data.id,
      destination: erp.data.id,
      schedule: { cron: "*/15 * * * *", timezone: "Asia/Shanghai" },
    },
  });
  if (flow.error) throw new Error(explain(flow.error));
  const run = await api.POST("/v1/flows/{id}/run", { params: { path: { id: flow.data.id } } });
  if (run.error) throw new Error(explain(run.error));
  const shown = await api.GET("/v1/runs/{id}", { params: { path: { id: run.data.id } } });
  if (shown.error) throw new Error(explain(shown.error));
  const status: "queued" | "running" | "retrying" | "succeeded" | "dead" = shown.data.status;
  console.log(status, shown.data.records_written);

  // Every list is {data, next_cursor}: page through the flows.
  const flows: Flow[] = [];
  let cursor: string | undefined;
  do {
    const page = await api.GET("/v1/flows", { params: { query: { limit: 100, cursor } } });
    if (page.error) throw new Error(explain(page.error));
    flows.push(...page.data.data);
    cursor = page.data.next_cursor ?? undefined;
  } while (cursor);

  const channels = await api.GET("/v1/alert-channels");
  if (channels.error) throw new Error(explain(channels.error));
  const kinds: string[] = channels.data.data.map((c) => c.kind);
  const deployments = await api.GET("/v1/deployments");
  if (deployments.error) throw new Error(explain(deployments.error));
  const connectors = await api.GET("/v1/connectors");
  if (connectors.error) throw new Error(explain(connectors.error));
  const names: string[] = connectors.data.data.map((c) => c.name);
  console.log(kinds, deployments.data.data.length, names);

  const link = await api.POST("/v1/connect-sessions", {
    body: {
      connector: "shopee",
      environment: "production",
      settings: {},
      return_url: "https://seller.example/connected",
    },
  });
  if (link.error) throw new Error(explain(link.error));
  console.log(link.data.url);
  return flows;
}
