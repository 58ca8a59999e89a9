output "id" {
  description = "ID of the cluster (target of the monitoring data collection rules)."
  value       = azurerm_kubernetes_cluster.this.id
}

output "name" {
  description = "Name of the cluster (az aks get-credentials)."
  value       = azurerm_kubernetes_cluster.this.name
}

output "oidc_issuer_url" {
  description = "OIDC issuer URL of the cluster (federated credentials)."
  value       = azurerm_kubernetes_cluster.this.oidc_issuer_url
}

output "kubelet_object_id" {
  description = "Object ID of the kubelet identity (AcrPull)."
  value       = azurerm_kubernetes_cluster.this.kubelet_identity[0].object_id
}

output "workload_identity_client_id" {
  description = "Client ID of the LiveOps workload identity: the azure.workload.identity/client-id annotation of the liveops ServiceAccount."
  value       = azurerm_user_assigned_identity.workload.client_id
}

output "workload_identity_principal_id" {
  description = "Principal (object) ID of the LiveOps workload identity, for role assignments."
  value       = azurerm_user_assigned_identity.workload.principal_id
}

output "agic_identity_object_id" {
  description = "Object ID of the AGIC add-on's identity (it also needs Reader on the resource group and Managed Identity Operator on the gateway's identity)."
  value       = azurerm_kubernetes_cluster.this.ingress_application_gateway[0].ingress_application_gateway_identity[0].object_id
}

output "key_vault_secrets_provider_client_id" {
  description = "Client ID of the Secrets Store CSI driver add-on identity (not used by LiveOps, which mounts with workload identity)."
  value       = azurerm_kubernetes_cluster.this.key_vault_secrets_provider[0].secret_identity[0].client_id
}
