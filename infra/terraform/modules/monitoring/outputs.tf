output "log_analytics_workspace_id" {
  description = "ID of the Log Analytics workspace (AKS oms_agent, diagnostics)."
  value       = azurerm_log_analytics_workspace.this.id
}

output "monitor_workspace_id" {
  description = "ID of the Azure Monitor workspace that stores managed Prometheus metrics."
  value       = azurerm_monitor_workspace.this.id
}

output "prometheus_query_endpoint" {
  description = "PromQL query endpoint of the Azure Monitor workspace (for Grafana or promtool)."
  value       = azurerm_monitor_workspace.this.query_endpoint
}

output "grafana_endpoint" {
  description = "URL of the managed Grafana, or an empty string when it is disabled."
  value       = var.grafana_enabled ? azurerm_dashboard_grafana.this[0].endpoint : ""
}
