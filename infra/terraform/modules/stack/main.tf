# One LiveOps environment on Azure. The environments' root (envs/) says where its state lives
# and each environment's .tfvars how large each part is (variables.tf); what an environment is made of is here, so dev and
# prod cannot drift apart. One file per concern:
#
#   network.tf     virtual network, subnets and their security groups, NAT, private DNS and
#                  every private endpoint
#   monitoring.tf  Log Analytics, managed Prometheus and Grafana, diagnostic settings, the
#                  action group and the Service Bus metric alerts
#   aks.tf         the cluster, its node pools and the LiveOps workload identity
#   gateway.tf     Application Gateway WAF_v2, its WAF policy and the ingress controller's rights
#   registry.tf    container registry
#   keyvault.tf    the vault, the secrets LiveOps reads and the gateway's TLS certificate
#   redis.tf, postgres.tf, servicebus.tf, mysql.tf   the stores

locals {
  tags = merge(var.tags, { env = var.environment, app = "liveops", managed-by = "terraform" })
}

data "azurerm_client_config" "current" {}

resource "azurerm_resource_group" "this" {
  name     = "${var.name_prefix}-rg"
  location = var.location
  tags     = local.tags
}

# Who acts in the environment: the AKS control plane, the LiveOps workloads (federated with their
# ServiceAccount), the Application Gateway (reads its certificate from Key Vault) and the MySQL VM
# (reads its password from Key Vault, writes its dumps to blob storage).
resource "azurerm_user_assigned_identity" "this" {
  for_each = toset(["aks-cp", "liveops-workload", "appgw", "mysql-vm"])

  name                = "${var.name_prefix}-${each.key}"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}
