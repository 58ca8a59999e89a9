output "vnet_id" {
  description = "ID of the virtual network."
  value       = azurerm_virtual_network.this.id
}

output "aks_subnet_id" {
  description = "Subnet of the AKS node pools (Azure CNI)."
  value       = azurerm_subnet.aks.id
}

output "aks_subnet_cidr" {
  description = "Address range of the AKS subnet (the only source allowed to MySQL)."
  value       = local.subnets.aks
}

output "data_subnet_id" {
  description = "Subnet that holds the private endpoints."
  value       = azurerm_subnet.data.id
}

output "data_subnet_cidr" {
  description = "Address range of the data subnet (private endpoints), for egress network policies."
  value       = local.subnets.data
}

output "appgw_subnet_id" {
  description = "Subnet dedicated to the Application Gateway."
  value       = azurerm_subnet.appgw.id
}

output "appgw_subnet_cidr" {
  description = "Address range of the Application Gateway subnet, the only ingress source of the gateway pods."
  value       = local.subnets.appgw
}

output "vm_subnet_id" {
  description = "Subnet of the MySQL VM."
  value       = azurerm_subnet.vm.id
}

output "vm_subnet_cidr" {
  description = "Address range of the MySQL VM subnet, for egress network policies."
  value       = local.subnets.vm
}

output "private_dns_zone_ids" {
  description = "Private DNS zone IDs by service: redis, postgres, servicebus, keyvault, acr, blob."
  value       = { for k, z in azurerm_private_dns_zone.this : k => z.id }
}
