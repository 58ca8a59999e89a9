output "id" {
  description = "ID of the cache."
  value       = azurerm_redis_cache.this.id
}

output "hostname" {
  description = "Host name of the cache (resolves to the private endpoint inside the virtual network)."
  value       = azurerm_redis_cache.this.hostname
}

output "ssl_port" {
  description = "TLS port of the cache (6380)."
  value       = azurerm_redis_cache.this.ssl_port
}

output "url" {
  description = "REDIS_URL for LiveOps: rediss:// (TLS) with the primary access key."
  value       = "rediss://:${urlencode(azurerm_redis_cache.this.primary_access_key)}@${azurerm_redis_cache.this.hostname}:${azurerm_redis_cache.this.ssl_port}/0"
  sensitive   = true
}
