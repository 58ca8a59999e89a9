output "private_ip" {
  description = "Private address of the MySQL VM (the mysql:// host of DB_URL and the exporters' scrape target)."
  value       = azurerm_network_interface.vm.private_ip_address
}

output "identity_principal_id" {
  description = "Principal ID of the VM's identity (Key Vault Secrets User for the password secret)."
  value       = azurerm_user_assigned_identity.vm.principal_id
}

output "backup_container_url" {
  description = "URL of the blob container that receives the dumps."
  value       = "${azurerm_storage_account.backup.primary_blob_endpoint}${azurerm_storage_container.backup.name}"
}
