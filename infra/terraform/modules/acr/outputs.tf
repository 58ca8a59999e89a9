output "id" {
  description = "ID of the registry (scope of the kubelet's AcrPull and the CI principal's AcrPush)."
  value       = azurerm_container_registry.this.id
}

output "login_server" {
  description = "Login server, e.g. liveopsacr.azurecr.io (the image name prefix in the Kustomize overlays)."
  value       = azurerm_container_registry.this.login_server
}
