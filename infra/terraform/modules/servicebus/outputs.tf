output "id" {
  description = "ID of the namespace."
  value       = azurerm_servicebus_namespace.this.id
}

output "namespace" {
  description = "Name of the namespace."
  value       = azurerm_servicebus_namespace.this.name
}

output "endpoint" {
  description = "Fully qualified namespace host (<name>.servicebus.windows.net), for Entra ID authentication."
  value       = "${azurerm_servicebus_namespace.this.name}.servicebus.windows.net"
}

output "topics" {
  description = "Topic names."
  value       = sort(keys(azurerm_servicebus_topic.this))
}

output "subscriptions" {
  description = "Consumer group (subscription) to topic."
  value       = local.subscriptions
}

output "connection_string" {
  description = "BUS_CONN: the AMQP connection string of the Send+Listen rule (empty when local auth is off)."
  value       = var.local_auth_enabled ? azurerm_servicebus_namespace_authorization_rule.liveops.primary_connection_string : ""
  sensitive   = true
}
