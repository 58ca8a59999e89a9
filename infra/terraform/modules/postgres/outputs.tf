output "id" {
  description = "ID of the primary server."
  value       = azurerm_postgresql_flexible_server.this.id
}

output "fqdn" {
  description = "FQDN of the primary (resolves to its private endpoint inside the virtual network)."
  value       = azurerm_postgresql_flexible_server.this.fqdn
}

output "replica_fqdn" {
  description = "FQDN of the read replica, or an empty string without one."
  value       = var.read_replica ? azurerm_postgresql_flexible_server.replica[0].fqdn : ""
}

output "url" {
  description = "DB_URL for LiveOps: postgres:// with the administrator's credentials and sslmode=require."
  value       = "postgres://${var.administrator_login}:${urlencode(random_password.admin.result)}@${azurerm_postgresql_flexible_server.this.fqdn}:5432/${var.database_name}?sslmode=require"
  sensitive   = true
}
