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
  description = "Azure region, e.g. westeurope."
  default     = "westeurope"
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name."
  default     = "liveops-dev"
}

variable "address_space" {
  type        = string
  description = "CIDR of the environment's virtual network (a /16)."
  default     = "10.41.0.0/16"
}

variable "admin_ssh_cidr" {
  type        = string
  description = "CIDR allowed to SSH to the MySQL VM; empty closes SSH."
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

variable "api_authorized_ip_ranges" {
  type        = list(string)
  description = "CIDRs allowed to reach the (public) dev API server: CI agents and developers."

  validation {
    condition     = length(var.api_authorized_ip_ranges) > 0 && !contains(var.api_authorized_ip_ranges, "0.0.0.0/0")
    error_message = "List at least one CIDR, and not 0.0.0.0/0."
  }
}

variable "terraform_runner_ip_ranges" {
  type        = list(string)
  description = "Egress CIDRs of the Terraform runner and developers, let through the Key Vault firewall (dev keeps a public endpoint, default deny)."
}

variable "acr_name" {
  type        = string
  description = "Globally unique registry name of dev."
  default     = "liveopsdevacr"
}

variable "key_vault_name" {
  type        = string
  description = "Globally unique Key Vault name."
  default     = "liveops-dev-kv"
}

variable "ci_principal_object_id" {
  type        = string
  description = "Object ID of the Jenkins service principal, given AcrPush on the registry."
}

variable "gateway_hostnames" {
  type        = list(string)
  description = "Host names in the gateway's self-signed dev certificate (the first is its subject)."
  default     = ["dev.liveops.example.com"]
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

variable "tags" {
  type        = map(string)
  description = "Tags put on every resource, besides env and app."
  default     = {}
}
