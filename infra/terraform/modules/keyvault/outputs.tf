output "id" {
  description = "ID of the vault."
  value       = azurerm_key_vault.this.id
}

output "name" {
  description = "Name of the vault (keyvaultName of the SecretProviderClass)."
  value       = azurerm_key_vault.this.name
}

output "uri" {
  description = "URI of the vault."
  value       = azurerm_key_vault.this.vault_uri
}

output "tenant_id" {
  description = "Entra ID tenant of the vault (tenantId of the SecretProviderClass)."
  value       = azurerm_key_vault.this.tenant_id
}

output "secret_names" {
  description = "Names of the secrets LiveOps reads (the objects of the SecretProviderClass)."
  value       = sort(keys(azurerm_key_vault_secret.liveops))
}

output "gateway_certificate_secret_id" {
  description = "Versionless secret ID of the gateway certificate (the Application Gateway follows renewals)."
  value       = azurerm_key_vault_certificate.gateway.versionless_secret_id
}
