terraform {
  required_version = ">= 1.9.0"

  required_providers {
    azurerm = { source = "hashicorp/azurerm", version = "~> 4.42" }
    random  = { source = "hashicorp/random", version = "~> 3.6" }
    time    = { source = "hashicorp/time", version = "~> 0.12" }
    tls     = { source = "hashicorp/tls", version = "~> 4.0" }
    # What azurerm cannot set yet: the WAF policy's block status (gateway.tf).
    azapi = { source = "Azure/azapi", version = "~> 2.0" }
  }
}
