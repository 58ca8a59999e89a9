output "id" {
  description = "ID of the Application Gateway (the AGIC add-on's gateway_id)."
  value       = azurerm_application_gateway.this.id
}

output "public_ip" {
  description = "Public address of the gateway (the DNS record of the game API points here)."
  value       = azurerm_public_ip.this.ip_address
}

output "waf_policy_id" {
  description = "ID of the WAF policy."
  value       = azurerm_web_application_firewall_policy.this.id
}
