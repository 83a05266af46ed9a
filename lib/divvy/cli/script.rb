# frozen_string_literal: true

module Divvy
  class CLI
    # The script the command runs: its path checked, then loaded with
    # {Divvy.load}. Runs in the master.
    module Script
      # Loads `path` and returns its task.
      #
      # @param path [String] the script, as given on the command line
      # @param report [Report] what makes the message of a script that
      #   raised
      # @return [Parallelizable] the task
      # @raise [Divvy::Error] naming the script and what is wrong with it,
      #   or the exception it raised while it loaded
      def self.load(path, report)
        check(path)
        $PROGRAM_NAME = path
        Divvy.load(path)
      rescue ScriptError, StandardError => e
        raise if e.is_a?(Divvy::Error)

        raise Divvy::Error, report.script_failure(path, e)
      end

      # Raises Divvy::Error naming what is wrong with the script's path.
      def self.check(path)
        raise Divvy::Error, "#{path}: no such file" unless File.exist?(path)
        raise Divvy::Error, "#{path}: is a directory" if File.directory?(path)
        raise Divvy::Error, "#{path}: not a regular file" unless File.file?(path)
        raise Divvy::Error, "#{path}: not readable" unless File.readable?(path)
      end
      private_class_method :check
    end
    private_constant :Script
  end
end
