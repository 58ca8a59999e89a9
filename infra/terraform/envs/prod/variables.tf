variable "subscription_id" {
  type        = string
  description = "Azure subscription the environment is deployed to."

  validation {
    condition     = can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.subscription_id))
    error_message = "subscription_id must be a GUID."
  }
}

variable "location" {
  type        = string
  description = "Azure region with three availability zones, e.g. westeurope."
  default     = "westeurope"
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name."
  default     = "liveops-prod"
}

variable "address_space" {
  type        = string
  description = "CIDR of the environment's virtual network (a /16)."
  default     = "10.40.0.0/16"
}

variable "admin_ssh_cidr" {
  type        = string
  description = "CIDR (bastion or VPN) allowed to SSH to the MySQL VM; empty closes SSH."
  default     = ""
}

variable "kubernetes_version" {
  type        = string
  description = "Kubernetes minor version of the cluster."
  default     = "1.32"
}

variable "aks_admin_group_object_ids" {
  type        = list(string)
  description = "Entra ID groups that administer the cluster."
}

variable "terraform_runner_ip_ranges" {
  type        = list(string)
  description = "Egress CIDRs of the Terraform runner, let through the Key Vault firewall while the vault still has a public endpoint during the first apply. Empty when Terraform runs inside the virtual network."
  default     = []
}

variable "acr_name" {
  type        = string
  description = "Globally unique registry name; the Kustomize overlays expect liveopsacr."
  default     = "liveopsacr"
}

variable "key_vault_name" {
  type        = string
  description = "Globally unique Key Vault name."
  default     = "liveops-prod-kv"
}

variable "ci_principal_object_id" {
  type        = string
  description = "Object ID of the Jenkins service principal, given AcrPush on the registry."
}

variable "gateway_hostnames" {
  type        = list(string)
  description = "Public host names of the game API, in the gateway's TLS certificate (the first is its subject)."
}

variable "gateway_certificate_issuer" {
  type        = string
  description = "Key Vault certificate issuer of the gateway certificate: a registered CA issuer, or \"Unknown\" to merge a CA-signed certificate by hand."
  default     = "Unknown"
}

variable "mysql_admin_ssh_public_key" {
  type        = string
  description = "OpenSSH public key of the MySQL VM's administrator."
}

variable "repository_backend" {
  type        = string
  description = "Which database LiveOps' DB_URL (secret db-url) points at: postgres (Flexible Server) or mysql (the VM)."
  default     = "postgres"
}

variable "grafana_admin_object_ids" {
  type        = list(string)
  description = "Entra ID users or groups that administer the managed Grafana."
  default     = []
}

variable "tags" {
  type        = map(string)
  description = "Tags put on every resource, besides env and app."
  default     = {}
}
